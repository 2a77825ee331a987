"""Sampling a QLoRA policy through the transformers backend: the NF4 base it trains on,
the bf16 base with the same adapter (``sampling.base_dtype``), and that with a static KV
cache, side by side.

A randomly initialised model of Qwen2.5-0.5B's shape (nothing downloaded) with a random
rank-16 LoRA adapter on every projection samples ``--prompts`` prompts x ``--n`` samples
x ``--new-tokens`` tokens (EOS ignored, so every row runs to the end). Prints tokens/s and
peak memory and writes them to ``$OUT/cuda_sampling.json`` (or ``--out``). Needs CUDA and
bitsandbytes; ``--device cpu --small`` runs the same code on a small shape, as a check.

    python benchmarks/bench_cuda_sampling.py [--prompts 64] [--n 8] [--new-tokens 256]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_cuda_qlora import build_random_qwen2

from codealign.models.loading import load_model, load_tokenizer
from codealign.models.sampling import TransformersBackend, generate
from codealign.models.stream import sampling_model
from codealign.settings.model import ModelConfig, SamplingConfig

#: (label, sampling.base_dtype, KV cache)
VARIANTS = (
    ("nf4 base + adapter (the policy as trained)", "policy", None),
    ("bf16 base + same adapter", "auto", None),
    ("bf16 base + same adapter, static cache", "auto", "static"),
)


def random_adapter(model_dir: Path, out: Path, device: str) -> None:
    """A rank-16 LoRA adapter with random (non-zero) weights, as after some training."""
    from peft import LoraConfig, get_peft_model

    from codealign.models.loading import LORA_TARGETS

    base = load_model(ModelConfig(name=str(model_dir), device=device, dtype="bfloat16"))
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=list(LORA_TARGETS["qwen2"]),
                      init_lora_weights=False)  # fmt: skip
    get_peft_model(base, lora).save_pretrained(str(out))


def sample(
    policy: ModelConfig, base_dtype: str, cache: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    sampling = SamplingConfig(
        n=args.n, temperature=0.8, max_new_tokens=args.new_tokens,
        batch_size=args.prompts * args.n, base_dtype=base_dtype,  # type: ignore[arg-type]
    )  # fmt: skip
    model = load_model(sampling_model(policy, sampling))
    model.eval()
    model.generation_config.eos_token_id = None  # every row runs the full length
    tokenizer = load_tokenizer(policy.name)
    backend = TransformersBackend(model, tokenizer, cache_implementation=cache)
    prompts = [
        tokenizer(f"def f{i}(x):\n    return x * {i} + ", add_special_tokens=False)["input_ids"]
        for i in range(args.prompts)
    ]
    warm = dataclasses.replace(sampling, n=1, max_new_tokens=8, batch_size=args.prompts)
    generate(backend, prompts, warm, stop=())
    if args.device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    out = generate(backend, prompts, sampling, stop=())
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(len(g.completion_ids) for gens in out for g in gens)
    peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    del backend, model
    return {
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_gib": None if peak is None else round(peak, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench-out"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--small", action="store_true", help="a small shape (a CPU check)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU (or --device cpu --small)")
    report: dict[str, Any] = {"device": torch.cuda.get_device_name() if args.device == "cuda"
                              else "cpu", "torch": torch.__version__, "rows": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, adapter = Path(tmp) / "model", Path(tmp) / "adapter"
        report["parameters"] = build_random_qwen2(model_dir, args.device, args.small)
        random_adapter(model_dir, adapter, args.device)
        policy = ModelConfig(name=str(model_dir), adapter=str(adapter), device=args.device,
                             dtype="bfloat16", quantization="4bit")  # fmt: skip
        for label, base_dtype, cache in VARIANTS:
            report["rows"].append({"variant": label, **sample(policy, base_dtype, cache, args)})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_sampling.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['device']}, torch {report['torch']}: random Qwen2 shape, "
        f"{report['parameters'] / 1e6:.0f}M parameters, LoRA r16 on every projection; "
        f"{args.prompts} prompts x {args.n} samples x {args.new_tokens} tokens"
    )
    print(f"{'sampling through':44} {'tokens/s':>9} {'vs nf4':>7} {'peak GiB':>9}")
    base = report["rows"][0]["tokens_per_s"]
    for row in report["rows"]:
        peak = "" if row["peak_gib"] is None else f"{row['peak_gib']:.3f}"
        print(f"{row['variant']:44} {row['tokens_per_s']:9.1f} "
              f"{row['tokens_per_s'] / base:6.2f}x {peak:>9}")  # fmt: skip


if __name__ == "__main__":
    main()
