"""The preference recipe on a 2-layer model: log-prob masking, references, every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codealign.cli import main
from codealign.errors import InputError
from codealign.models.loading import load_model, load_tokenizer
from codealign.settings.model import ModelConfig
from codealign.settings.preference import PreferenceConfig
from codealign.training.dpo import encode_records, train_preference
from codealign.training.sequences import (
    TokenSequence,
    chunked_token_logps,
    collate,
    sequence_logps,
    token_logps,
)

PROMPT = "def add(a, b):\n"
CHOSEN = "    return a + b\n"
REJECTED = "    return a - b\n"


def model_config(model_dir: Path, **kwargs: object) -> ModelConfig:
    return ModelConfig(name=str(model_dir), device="cpu", lora_dropout=0.0, **kwargs)  # type: ignore[arg-type]


def naive_logp(model: torch.nn.Module, seq: TokenSequence) -> float:
    """Sum of log p(completion token) from one unpadded forward over the whole sequence."""
    ids = torch.tensor([list(seq.prompt_ids + seq.completion_ids)])
    logps = model(input_ids=ids).logits[0].log_softmax(-1)
    start = len(seq.prompt_ids)
    return sum(logps[start + i - 1, token].item() for i, token in enumerate(seq.completion_ids))


def test_sequence_logps_count_completion_tokens_only(small_model_dir: Path) -> None:
    model = load_model(model_config(small_model_dir))
    model.eval()
    seqs = [
        TokenSequence((5, 6, 7, 8, 9, 10), (11, 12)),
        TokenSequence((5,), (13, 14, 15, 16)),
        TokenSequence((7, 8, 9), (20,)),
    ]
    with torch.no_grad():
        sums, counts = sequence_logps(model, collate(seqs, pad_id=0, max_length=64))
        expected = [naive_logp(model, s) for s in seqs]
        # Padding with another token changes nothing: the mask and positions hide it.
        other_pad, _ = sequence_logps(model, collate(seqs, pad_id=3, max_length=64))
    assert counts.tolist() == [2, 4, 1]
    assert sums.tolist() == pytest.approx(expected, abs=1e-4)
    assert other_pad.tolist() == pytest.approx(expected, abs=1e-4)


def test_the_plain_logits_path_agrees(
    small_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models whose head is not a plain linear layer take the logits path: same sums."""
    model = load_model(model_config(small_model_dir))
    model.eval()
    seqs = [TokenSequence((5, 6, 7), (11, 12)), TokenSequence((5,), (13, 14, 15))]
    batch = collate(seqs, pad_id=0, max_length=64)
    with torch.no_grad():
        fused, _ = sequence_logps(model, batch)
        monkeypatch.setattr("codealign.training.sequences._plain_head", lambda model: None)
        plain, _ = sequence_logps(model, batch)
    assert fused.tolist() == pytest.approx(plain.tolist(), abs=1e-5)


@pytest.mark.parametrize(("block", "scale"), [(1, 1.0), (3, 1.25), (64, 1.0)])
def test_blockwise_log_probs_match_full_logits_with_gradients(block: int, scale: float) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(10, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 7, (10,))
    upstream = torch.randn(10, dtype=torch.float64)
    logits = (hidden @ weight.T) * scale  # scale = 1 / sampling temperature
    full = token_logps(logits[None], labels[None])[0]
    (full * upstream).sum().backward()
    expected = full.detach(), hidden.grad.clone(), weight.grad.clone()  # type: ignore[union-attr]
    probs = logits.detach().softmax(-1)
    expected_entropy = -(probs * probs.log()).sum(-1)
    hidden.grad = weight.grad = None
    blocked, entropy = chunked_token_logps(
        hidden, weight, labels, block=block, scale=scale, with_entropy=True
    )
    (blocked * upstream).sum().backward()
    assert blocked.dtype == torch.float32
    assert torch.allclose(blocked.double(), expected[0], atol=1e-5)
    assert torch.allclose(entropy.double(), expected_entropy, atol=1e-5)
    assert not entropy.requires_grad
    assert torch.allclose(hidden.grad, expected[1], atol=1e-5)  # type: ignore[arg-type]
    assert torch.allclose(weight.grad, expected[2], atol=1e-5)  # type: ignore[arg-type]


def test_long_sequences_lose_the_start_of_the_prompt_first() -> None:
    seq = TokenSequence((1, 2, 3, 4, 5), (6, 7, 8))
    assert seq.clipped(5) == TokenSequence((4, 5), (6, 7, 8))
    assert seq.clipped(3) == TokenSequence((5,), (6, 7))  # one prompt token always stays
    assert seq.clipped(100) is seq


def pair_records(n: int = 8) -> list[dict[str, object]]:
    return [{"prompt": PROMPT, "chosen": CHOSEN, "rejected": REJECTED} for _ in range(n)]


def margin(model_dir: Path, adapter: Path | None) -> float:
    """log π(chosen) - log π(rejected) under the model (with ``adapter``)."""
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(model_config(model_dir, adapter=str(adapter) if adapter else None))
    model.eval()
    unit = encode_records(pair_records(1), "dpo", tokenizer)[0]
    with torch.no_grad():
        sums, _ = sequence_logps(model, collate([unit.first, unit.second], 0, 64))
    return float(sums[0] - sums[1])


@pytest.mark.parametrize("method", ["dpo", "ipo", "kto", "orpo"])
def test_every_method_prefers_the_chosen_side_after_training(
    small_model_dir: Path, tmp_path: Path, method: str
) -> None:
    if method == "kto":
        records: list[dict[str, object]] = [
            {"prompt": PROMPT, "completion": c, "label": label}
            for _ in range(4)
            for c, label in ((CHOSEN, True), (REJECTED, False))
        ]
    else:
        records = pair_records()
    config = PreferenceConfig(lr=3e-3, epochs=6, batch_size=4, beta=0.5)
    metrics = train_preference(
        records, model_config(small_model_dir), config, tmp_path / "adapter", method=method,
        progress=False,
    )  # fmt: skip
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "adapter.tmp").exists()
    log = [json.loads(line) for line in (tmp_path / "adapter" / "train_log.jsonl").open()]
    assert len(log) == metrics["steps"] == 12
    assert metrics["loss_last"] < metrics["loss_first"]
    assert margin(small_model_dir, tmp_path / "adapter") > margin(small_model_dir, None) + 0.5


def test_qlora_policy_trains_through_the_recipe(small_model_dir: Path, tmp_path: Path) -> None:
    """A 4-bit base (bitsandbytes, here on the CPU): only the adapter learns, and it does."""
    config = PreferenceConfig(lr=3e-3, epochs=6, batch_size=4, beta=0.5)
    quantized = model_config(small_model_dir, quantization="4bit")
    train_preference(pair_records(), quantized, config, tmp_path / "adapter", progress=False)
    assert margin(small_model_dir, tmp_path / "adapter") > margin(small_model_dir, None) + 0.5


def test_live_and_precomputed_references_agree(small_model_dir: Path, tmp_path: Path) -> None:
    """Without dropout, the first step sees the same reference either way: the bare base
    (adapters off), and in a later round the previous adapter, frozen or precomputed."""
    base = model_config(small_model_dir)
    first_losses = []
    for precompute in (True, False):
        config = PreferenceConfig(lr=1e-3, batch_size=8, precompute_reference=precompute)
        metrics = train_preference(
            pair_records(), base, config, tmp_path / f"r1-{precompute}", progress=False
        )
        first_losses.append(metrics["loss_first"])
    assert first_losses[0] == pytest.approx(first_losses[1], abs=1e-5)
    assert first_losses[0] == pytest.approx(0.693147, abs=1e-4)  # policy == reference: log 2

    previous = tmp_path / "r1-True"
    start = model_config(small_model_dir, adapter=str(previous))
    before = (previous / "adapter_model.safetensors").read_bytes()
    second = []
    for precompute, reference in ((True, "start"), (False, previous)):
        config = PreferenceConfig(lr=1e-3, batch_size=8, precompute_reference=precompute)
        metrics = train_preference(
            pair_records(), start, config, tmp_path / f"r2-{precompute}",
            reference=reference, progress=False,
        )  # fmt: skip
        second.append(metrics["loss_first"])
    assert second[0] == pytest.approx(second[1], abs=1e-5)
    assert second[0] == pytest.approx(0.693147, abs=1e-4)
    assert (previous / "adapter_model.safetensors").read_bytes() == before
    # The trained policy moved away from its frozen reference.
    assert margin(small_model_dir, tmp_path / "r2-False") > margin(small_model_dir, previous)


def test_sampler_token_ids_are_used_as_they_are(small_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(small_model_dir))
    record = {"prompt": "ignored", "chosen": "x", "rejected": "y"}
    record |= {"prompt_ids": [5, 6], "chosen_ids": [7], "rejected_ids": [8, 9]}
    unit = encode_records([record], "dpo", tokenizer)[0]
    assert unit.first == TokenSequence((5, 6), (7,))
    assert unit.second == TokenSequence((5, 6), (8, 9))
    with pytest.raises(InputError, match="empty prompt"):
        encode_records([{**record, "prompt_ids": []}], "dpo", tokenizer)


def test_dpo_command(
    small_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_records(4)))
    out = tmp_path / "adapter"
    argv = ["dpo", "--pairs", str(pairs), "--out", str(out), "--model", str(small_model_dir)]
    assert main([*argv, "--device", "cpu", "--method", "ipo", "--epochs", "2", "-q"]) == 0
    assert json.loads((out / "train_metrics.json").read_text())["method"] == "ipo"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    assert main(["dpo", "--pairs", str(bad), "--out", str(out), "--model", "tiny", "-q"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
