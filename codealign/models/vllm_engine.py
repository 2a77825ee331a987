"""The vLLM engine process: load the base once, run one stage's requests, stream each
prompt's finished samples to the parent, exit.

Runs as ``python -m codealign.models.vllm_engine FD`` (``codealign.models.vllm_backend``
starts it, and writes the pickled specs to its stdin); only this process imports vllm.
Messages to the parent are ``(kind, payload)``: ``("ready", seconds to start)``, then
``("done", (prompt index, [token ids per sample]))`` as prompts finish, then ``("end",
None)``; or ``("error", why)``, a sentence that names the model, its architecture and
dtype, and what to do.
"""

from __future__ import annotations

import ctypes
import json
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EngineSpec:
    """What the engine loads: the base model, unquantized."""

    model: str
    dtype: str
    seed: int
    max_lora_rank: int | None  # None: no adapter, LoRA off
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    trust_remote_code: bool = False
    #: CPU engines size their KV cache in GiB (VLLM_CPU_KVCACHE_SPACE) rather than as a
    #: share of memory; vLLM's own default takes most of the machine.
    cpu_kv_cache_gib: int = 2


@dataclass(frozen=True)
class RequestSpec:
    """One stage's requests: every prompt, ``n`` samples each, one adapter for all."""

    prompts: list[list[int]]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stop: list[str]
    adapter: str | None


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _architectures(model: str) -> str:
    try:
        config = json.loads(Path(model, "config.json").read_text("utf-8"))
        return ", ".join(config.get("architectures") or []) or "unknown"
    except (OSError, ValueError):
        return "unknown (no readable config.json)"


def cannot_serve(spec: EngineSpec, exc: BaseException) -> str:
    """Why the engine did not start, in one sentence a user can act on."""
    import vllm

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return (
        f"vLLM {vllm.__version__} cannot serve {spec.model} (architecture "
        f"{_architectures(spec.model)}, dtype {spec.dtype}): {type(exc).__name__}: {first}. "
        "Use sampling.backend=hf, another sampling.base_dtype, or a vLLM that supports the "
        "architecture (pip install -U 'codealign[vllm]')"
    )


def _engine(spec: EngineSpec) -> Any:
    from vllm import EngineArgs
    from vllm.v1.engine.llm_engine import LLMEngine

    args = EngineArgs(
        model=spec.model,
        dtype=spec.dtype,
        seed=spec.seed,
        enable_lora=spec.max_lora_rank is not None,
        max_lora_rank=spec.max_lora_rank or 16,
        max_loras=1,
        tensor_parallel_size=spec.tensor_parallel_size,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        max_model_len=spec.max_model_len,
        trust_remote_code=spec.trust_remote_code,
        disable_log_stats=True,
    )
    return LLMEngine.from_engine_args(args)


def _params(request: RequestSpec, index: int, per_request_seed: bool) -> Any:
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    return SamplingParams(
        n=request.n,
        temperature=request.temperature,
        top_p=request.top_p if request.temperature > 0 else 1.0,
        max_tokens=request.max_tokens,
        # Stop strings end generation early; the parent cuts the ids on a token boundary.
        stop=request.stop or None,
        skip_special_tokens=True,
        # One prompt, one seeded stream: the same samples however requests are batched.
        seed=request.seed * 1_000_003 + index if per_request_seed else None,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )


def serve(conn: Connection, spec: EngineSpec, request: RequestSpec) -> None:
    """The engine process's whole life."""
    _die_with_parent()
    if spec.tensor_parallel_size == 1:
        # The engine core in this process: no further process to clean up after.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(spec.cpu_kv_cache_gib))
    started = time.perf_counter()
    try:
        from vllm.lora.request import LoRARequest
        from vllm.platforms import current_platform

        engine = _engine(spec)
    except Exception as exc:
        conn.send(("error", cannot_serve(spec, exc)))
        conn.close()
        return
    conn.send(("ready", time.perf_counter() - started))
    # CPU generators cannot take per-request seeds; the engine's seed holds there.
    per_request_seed = not current_platform.is_cpu()
    lora = LoRARequest("policy", 1, request.adapter) if request.adapter else None
    try:
        index_of: dict[str, int] = {}
        for index, prompt in enumerate(request.prompts):
            params = _params(request, index, per_request_seed)
            rid = engine.add_request(
                str(index), {"prompt_token_ids": prompt}, params, lora_request=lora
            )
            index_of[str(rid)] = index_of[str(index)] = index
        while engine.has_unfinished_requests():
            for output in engine.step():
                if output.finished:
                    samples = sorted(output.outputs, key=lambda o: o.index)
                    ids = [list(sample.token_ids) for sample in samples]
                    conn.send(("done", (index_of[output.request_id], ids)))
        conn.send(("end", None))
    except Exception as exc:
        conn.send(("error", cannot_serve(spec, exc)))
    finally:
        conn.close()


if __name__ == "__main__":
    _channel = Connection(int(sys.argv[1]), readable=False)
    _spec, _request = pickle.load(sys.stdin.buffer)
    serve(_channel, _spec, _request)
