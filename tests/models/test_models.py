"""Loading, LoRA/QLoRA and sampling on a 2-layer model built in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codealign.answers import pick_code
from codealign.cli import main
from codealign.models.loading import add_lora, load_adapter, load_model, load_tokenizer
from codealign.models.sampling import (
    Generation,
    TransformersBackend,
    generate,
    render_prompt,
    stop_sequences,
    truncate,
)
from codealign.models.stream import sample_with_model, sampling_model
from codealign.settings.model import HUMAN_EVAL_STOPS, ModelConfig, SamplingConfig
from codealign.tasks import AssertsSuite, Task

TASKS = [
    Task(
        "t/0",
        'def add(a, b):\n    """Return a + b."""\n',
        "add",
        AssertsSuite(("assert add(1, 2) == 3",)),
    ),
    Task(
        "t/1",
        'def scale(x: int) -> int:\n    """Return x times 3."""\n',
        "scale",
        AssertsSuite(("assert scale(1) == 3",)),
    ),
]


@pytest.fixture(scope="module")
def model_dir(small_model_dir: Path) -> Path:
    return small_model_dir


def config(model_dir: Path, **kwargs: object) -> ModelConfig:
    return ModelConfig(name=str(model_dir), device="cpu", **kwargs)  # type: ignore[arg-type]


def backend(model_dir: Path, **kwargs: object) -> TransformersBackend:
    model = load_model(config(model_dir, **kwargs))
    model.eval()
    return TransformersBackend(model, load_tokenizer(str(model_dir)))


def sample(
    be: TransformersBackend, prompts: list[str], sampling: SamplingConfig, stop: tuple[str, ...]
) -> list[list[Generation]]:
    encoded = [be.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return generate(be, encoded, sampling, stop=stop)


def test_tokenizer_pads_left_and_splits_digits(model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(model_dir))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    ids = tokenizer("x = 1234", add_special_tokens=False)["input_ids"]
    pieces = [tokenizer.decode([i]) for i in ids]
    assert all(len(p.strip()) <= 1 for p in pieces if p.strip().isdigit())


def test_stop_sequences_seeds_and_kept_ids(model_dir: Path) -> None:
    be = backend(model_dir)
    tokenizer = be.tokenizer
    prompts = [t.prompt for t in TASKS]
    stop = ("e", "\n")  # an untrained model says both soon
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=24, seed=7, batch_size=3)
    first = sample(be, prompts, sampling, stop)
    again = sample(be, prompts, sampling, stop)
    other = sample(
        be,
        prompts,
        SamplingConfig(n=4, temperature=1.0, max_new_tokens=24, seed=8, batch_size=3),
        stop,
    )
    assert [[g.text for g in gens] for gens in first] == [[g.text for g in gens] for gens in again]
    assert [[g.text for g in gens] for gens in first] != [[g.text for g in gens] for gens in other]
    flat = [g for gens in first for g in gens]
    assert any(g.finish_reason == "stop" for g in flat)
    for g in flat:
        assert not any(s in g.text for s in stop)
        assert tokenizer.decode(g.completion_ids, skip_special_tokens=True) == g.text
        assert (
            g.prompt_ids
            == tokenizer(prompts[0] if g in first[0] else prompts[1], add_special_tokens=False)[
                "input_ids"
            ]
        )
        assert len(g.completion_ids) <= 24


def test_truncate_cuts_on_a_token_boundary(model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(model_dir))
    ids = tokenizer("    return a + b\ndef other():\n", add_special_tokens=False)["input_ids"]
    kept_ids, text, reason = truncate(ids, tokenizer, ["\ndef"], {tokenizer.eos_token_id})
    assert reason == "stop" and text == tokenizer.decode(kept_ids)
    assert text.startswith("    return a + b") and "def" not in text
    kept_ids, text, reason = truncate(
        [*ids, tokenizer.eos_token_id, *ids], tokenizer, [], {tokenizer.eos_token_id}
    )
    assert kept_ids == ids and reason == "stop"


def test_left_padded_batches_match_single_prompts(model_dir: Path) -> None:
    be = backend(model_dir)
    greedy = SamplingConfig(n=1, temperature=0, max_new_tokens=12, batch_size=2)
    batched = sample(be, [t.prompt for t in TASKS], greedy, ())
    singles = [sample(be, [t.prompt], greedy, ())[0] for t in TASKS]
    assert [g[0].completion_ids for g in batched] == [g[0].completion_ids for g in singles]


def test_lora_adapters_save_reload_and_merge_identically(model_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    peft_model = add_lora(load_model(config(model_dir)), config(model_dir, lora_r=4))
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # fresh LoRA is a no-op; make it matter
            torch.nn.init.normal_(param, std=0.5)
    peft_model.eval()
    x = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        expected = peft_model(input_ids=x).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    reloaded = load_adapter(load_model(config(model_dir)), tmp_path / "adapter")
    reloaded.eval()
    merged = reloaded.merge_and_unload()
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=x).logits, expected, atol=1e-5)
        assert torch.allclose(merged(input_ids=x).logits, expected, atol=1e-4)
    plain = load_model(config(model_dir))
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=x).logits, expected, atol=1e-3)
    via_config = load_model(config(model_dir, adapter=str(tmp_path / "adapter")))
    with torch.no_grad():
        assert torch.allclose(via_config(input_ids=x).logits, expected, atol=1e-5)
    # Exported: a plain model directory, loadable without peft, with the same outputs.
    assert (
        main(
            [
                "merge",
                "--model",
                str(model_dir),
                "--adapter",
                str(tmp_path / "adapter"),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    exported = load_model(config(tmp_path / "merged"))
    assert not hasattr(exported, "peft_config")
    with torch.no_grad():
        assert torch.allclose(exported(input_ids=x).logits, expected, atol=1e-4)


def test_4bit_on_cpu_trains_after_an_eval_mode_generation(model_dir: Path) -> None:
    cfg = config(model_dir, quantization="4bit", lora_r=4)
    model = add_lora(load_model(cfg, for_training=True), cfg)
    tokenizer = load_tokenizer(str(model_dir))
    model.eval()  # the bitsandbytes trap: eval-mode no-grad forward first
    sample(
        TransformersBackend(model, tokenizer),
        [TASKS[0].prompt],
        SamplingConfig(n=2, max_new_tokens=6),
        (),
    )
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    x = torch.randint(0, 300, (2, 12))
    model(input_ids=x, labels=x).loss.backward()
    optimizer.step()
    changed = [n for n, p in trainable.items() if not torch.equal(before[n], p)]
    assert len(changed) == len(trainable), "some adapter weights got no gradient"


def test_chat_prompts_and_fenced_code(model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(model_dir))
    tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    chat = render_prompt(TASKS[0], ModelConfig(prompt_format="chat"), tokenizer)
    assert chat.startswith("<|user|>") and chat.endswith("<|assistant|>")
    assert TASKS[0].prompt.strip() in chat and "```python" in chat
    assert render_prompt(TASKS[0], ModelConfig(), tokenizer) == TASKS[0].prompt
    # An answer the prompt opens with a fence (and the task's code) stops at its close.
    fenced = ModelConfig(prompt_format="chat", answer_prefix="fence")
    assert render_prompt(TASKS[0], fenced, tokenizer) == chat + "```python\n"
    opened = ModelConfig(prompt_format="chat", answer_prefix="prompt")
    assert render_prompt(TASKS[0], opened, tokenizer) == chat + "```python\n" + TASKS[0].prompt
    assert stop_sequences(fenced, SamplingConfig()) == ("\n```",)
    assert stop_sequences(ModelConfig(prompt_format="chat"), SamplingConfig()) == ()
    assert stop_sequences(ModelConfig(), SamplingConfig()) == HUMAN_EVAL_STOPS
    answer = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert pick_code(answer, "add") == ("def add(a, b):\n    return a + b\n", "fence")
    assert pick_code("```\nx = 1\n", "add") == ("x = 1\n", "fence")  # unterminated fence
    assert pick_code("no fence", "add") == ("no fence", "none")


@pytest.mark.sandbox
def test_sample_records_and_cli(model_dir: Path, tmp_path: Path) -> None:
    records = sample_with_model(
        TASKS, config(model_dir), SamplingConfig(n=3, max_new_tokens=8), progress=False
    )
    assert [r["task_id"] for r in records] == ["t/0"] * 3 + ["t/1"] * 3
    assert {r["model"] for r in records} == {str(model_dir)}
    assert all(
        {"completion", "prompt_ids", "completion_ids", "finish_reason"} <= set(r) for r in records
    )
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": t.task_id,
                    "prompt": t.prompt,
                    "entry_point": t.entry_point,
                    "tests": {"kind": "asserts", "asserts": list(t.tests.asserts)},
                }
            )
            + "\n"  # type: ignore[union-attr]
            for t in TASKS
        )
    )
    out = tmp_path / "samples.jsonl"
    assert (
        main(
            [
                "sample",
                "--model",
                str(model_dir),
                "--tasks",
                str(tasks_file),
                "--n",
                "2",
                "--max-new-tokens",
                "8",
                "--device",
                "cpu",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["model"] == str(model_dir)

    # eval --model: overlapped (the default) and in sequence give the same samples and
    # verdicts; an earlier --save-samples file is replaced, not taken as finished.
    made = {}
    for mode in ("--no-overlap", "--seed=0", "--seed=1"):
        saved, results = tmp_path / f"{mode}.jsonl", tmp_path / f"{mode}-r.jsonl"
        saved.write_text(json.dumps(lines[0]) + "\n")  # a stale file
        argv = [
            "eval",
            "--model",
            str(model_dir),
            "--tasks",
            str(tasks_file),
            "--n",
            "3",
            "--max-new-tokens",
            "8",
            "--device",
            "cpu",
            "--k",
            "1",
            "-q",
            mode,
            "--save-samples",
            str(saved),
            "--results",
            str(results),
            "--sandbox",
            "bwrap",
        ]
        assert main(argv) == 0  # fmt: skip
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        made[mode] = [(r["completion"], r["status"]) for r in rows]
        assert len(rows) == 6 and saved.read_text().count("\n") == 6
    assert made["--no-overlap"] == made["--seed=0"] != made["--seed=1"]


def test_a_4bit_policy_samples_from_an_unquantized_base_unless_told_otherwise() -> None:
    qlora = ModelConfig(quantization="4bit", dtype="auto", adapter="run/round-1/adapter")
    fast = sampling_model(qlora, SamplingConfig())
    assert (fast.quantization, fast.dtype, fast.adapter) == ("none", "auto", qlora.adapter)
    assert sampling_model(qlora, SamplingConfig(base_dtype="bfloat16")).dtype == "bfloat16"
    assert sampling_model(qlora, SamplingConfig(base_dtype="policy")) == qlora
    with pytest.raises(ValueError, match=r"needs sampling\.backend=hf"):
        SamplingConfig(backend="vllm", base_dtype="policy")
