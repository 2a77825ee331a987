"""The reward model and its recipe on a 2-layer backbone built in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from codealign.cli import main
from codealign.errors import InputError
from codealign.models.reward import RewardModel, last_token_index
from codealign.models.tiny import TinyRecipe, tiny_llama, train_tokenizer
from codealign.readability.scorer import ReadabilityScorer
from codealign.settings.model import ModelConfig
from codealign.settings.reward_model import RewardModelConfig
from codealign.training import reward_model as recipe
from codealign.training.reward_model import load_pairs, split_pairs, train_reward_model

READABLE = (
    'def total(values: list[int]) -> int:\n    """Sum of values."""\n    return sum(values)\n'
)
CRAMMED = "def total(v):\n    t=0\n    for i in range(len(v)): t=t+v[i]\n    return t\n"


def pairs(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        name = f"f{i % 7}"
        out.append(
            {
                "prompt": f"# task {i}\n",
                "margin": 1.0,
                "family": f"fam{i % 5}",
                "chosen": READABLE.replace("total", name),
                "rejected": CRAMMED.replace("total", name),
            }
        )
    return out


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("backbone")
    tokenizer = train_tokenizer([READABLE, CRAMMED] * 30, 300)
    model = tiny_llama(
        len(tokenizer),
        TinyRecipe(hidden_size=64, intermediate_size=128, layers=2, heads=4, max_positions=256),
        tokenizer.eos_token_id,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def small_config(backbone_dir: Path, **kwargs: Any) -> RewardModelConfig:
    base = {
        "base": str(backbone_dir),
        "device": "cpu",
        "max_length": 96,
        "epochs": 2,
        "batch_size": 4,
        "lr": 3e-3,
        "eval_fraction": 0.2,
        "checkpoint_every": 2,
    }
    return RewardModelConfig(**{**base, **kwargs})


def test_last_token_index_for_both_padding_sides() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 3, 0]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_score_ignores_batch_composition_and_padding_side(backbone_dir: Path) -> None:
    model = RewardModel.create(
        ModelConfig(name=str(backbone_dir), device="cpu"), finetune="full", max_length=96
    )
    model.eval()
    prompts = ["", "# a longer prompt that pads the others\n", "# p\n"]
    responses = [READABLE, CRAMMED, "x = 1\n"]
    batched = model.score(prompts, responses)
    alone = [model.score([p], [r])[0] for p, r in zip(prompts, responses, strict=True)]
    assert batched == pytest.approx(alone, abs=1e-5)
    # The same sequences left-padded give the same rewards as the right padding above.
    seqs = [model.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
    width = max(map(len, seqs))
    pad = model.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    with torch.no_grad():
        left = model(ids, mask)
        right = model.rewards(seqs)
    assert torch.allclose(left, right, atol=1e-4)
    assert all(0.0 <= s <= 1.0 for s in batched)


def test_rewards_run_short_and_long_sequences_apart(backbone_dir: Path) -> None:
    model = RewardModel.create(
        ModelConfig(name=str(backbone_dir), device="cpu"), finetune="full", max_length=96
    )
    # 32 of 10 tokens and 32 of 96, interleaved: one pass pads 64 rows to 96 (6144 tokens,
    # plus 2048 for the pass: 8192), two pass 320 + 3072 real tokens (+ 4096): 7488.
    seqs = [[7 + i % 50] * (10 if i % 2 else 96) for i in range(64)]
    widths: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[1]))
    try:
        grouped = model.rewards(seqs)
    finally:
        hook.remove()
    assert widths == [10, 96]
    with torch.no_grad():
        whole = model.padded_rewards(seqs)  # one pass, padded to 96
        alone = torch.cat([model.padded_rewards([s]) for s in seqs[:4]])
    assert torch.allclose(grouped.detach(), whole, atol=1e-5)  # in the callers' order
    assert torch.allclose(grouped.detach()[:4], alone, atol=1e-5)
    grouped.sum().backward()  # type: ignore[no-untyped-call]
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0


def test_train_save_load_and_score(backbone_dir: Path, tmp_path: Path) -> None:
    metrics = train_reward_model(
        pairs(40), small_config(backbone_dir), tmp_path / "rm", progress=False
    )
    assert metrics["heldout_pairs"] > 0 and metrics["train_pairs"] > 0
    assert metrics["heldout_accuracy"] >= 0.9  # the same contrast, on unseen families
    assert not (tmp_path / "rm" / "checkpoint").exists()
    model = RewardModel.load(tmp_path / "rm", device="cpu")
    readable, crammed = model.score(["", ""], [READABLE, CRAMMED])
    assert readable > crammed
    assert json.loads((tmp_path / "rm" / "metrics.json").read_text())["center"] == (
        model.meta.center
    )


def test_lora_reward_model(backbone_dir: Path, tmp_path: Path) -> None:
    config = small_config(backbone_dir, finetune="lora", lora_r=4, epochs=1)
    train_reward_model(pairs(16), config, tmp_path / "rm", progress=False)
    assert (tmp_path / "rm" / "adapter" / "adapter_config.json").exists()
    model = RewardModel.load(tmp_path / "rm", device="cpu")
    assert len(model.score(["", ""], [READABLE, CRAMMED])) == 2


def test_an_interrupted_run_resumes_from_its_checkpoint(
    backbone_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = recipe.bradley_terry_loss

    def crash_after_five(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recipe, "bradley_terry_loss", crash_after_five)
    config = small_config(backbone_dir)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(pairs(40), config, tmp_path / "rm", progress=False)
    assert (tmp_path / "rm" / "checkpoint" / "state.pt").exists()
    calls["n"] = -1000  # no more crashes; count the steps of the resumed run
    train_reward_model(pairs(40), config, tmp_path / "rm", progress=False)
    train_count = len(split_pairs(pairs(40), 0.2, 0)[0])
    total = config.epochs * -(-train_count // config.batch_size)
    assert calls["n"] + 1000 == total - 4  # the checkpoint at step 4 was kept


def test_split_holds_out_whole_families() -> None:
    train, held = split_pairs(pairs(50), 0.2, seed=1)
    assert {p["family"] for p in train}.isdisjoint({p["family"] for p in held})
    assert held and train
    train, held = split_pairs(pairs(50), 0.0, 1, families=["fam3"])
    assert {p["family"] for p in held} == {"fam3"}
    with pytest.raises(InputError, match="not in the pairs"):
        split_pairs(pairs(10), 0.0, 1, families=["nope"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "p", "chosen": "a"}', "field 'rejected' must be a string"),
        ('{"prompt": 3, "chosen": "a", "rejected": "b"}', "field 'prompt' must be a string"),
        ('{"chosen": "a", "rejected": "b", "margin": "x"}', "field 'margin' must be a number"),
        ("{oops", "malformed JSON"),
    ],
)
def test_bad_pairs_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"chosen": "a", "rejected": "b"}\n' + line + "\n")
    with pytest.raises(InputError, match=r"pairs\.jsonl:2") as info:
        load_pairs(path)
    assert message in str(info.value)


def test_cli_train_and_eval_and_ensemble(backbone_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs(40)))
    for seed in (0, 1):
        assert (
            main(
                [
                    "train-rm",
                    "--pairs",
                    str(data),
                    "--out",
                    str(tmp_path / f"rm{seed}"),
                    "--base",
                    str(backbone_dir),
                    "--device",
                    "cpu",
                    "--max-length",
                    "96",
                    "--batch-size",
                    "4",
                    "--lr",
                    "0.003",
                    "--seed",
                    str(seed),
                    "-q",
                ]
            )
            == 0
        )
    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "eval-rm",
                "--pairs",
                str(data),
                "--model",
                str(tmp_path / "rm0"),
                "--device",
                "cpu",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    assert json.loads(report.read_text())["accuracy"] >= 0.9
    scorer = ReadabilityScorer([tmp_path / "rm0", tmp_path / "rm1"], lam=2.0, device="cpu")
    (good, bad) = scorer.score(["", ""], [READABLE, CRAMMED])
    assert len(good.per_model) == 2
    assert good.mean == pytest.approx(sum(good.per_model) / 2)
    assert good.conservative == pytest.approx(max(0.0, good.mean - 2.0 * good.std))
    assert good.mean > bad.mean
    assert scorer.score([], []) == []
