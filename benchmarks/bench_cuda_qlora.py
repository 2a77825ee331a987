"""CUDA benchmark: a randomly initialised ~0.5B Qwen2-style model, 4-bit (QLoRA) vs bf16.

Needs a CUDA GPU and bitsandbytes, nothing downloaded. Reports, side by side for the NF4
base (double quantization, bf16 compute) and the plain bf16 base:
- generation throughput through codealign's sampling backend (batched, KV cache);
- a LoRA training step (forward + backward + AdamW) on every attention/MLP projection;
- peak GPU memory of each.
Figures go to stdout and to ``$OUT/cuda_qlora.json`` (or ``--out``). Usage:

    python benchmarks/bench_cuda_qlora.py [--out DIR] [--batch 64] [--new-tokens 128]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import torch

from codealign.models.loading import add_lora, load_model
from codealign.models.sampling import TransformersBackend, generate
from codealign.models.tiny import train_tokenizer
from codealign.settings.model import ModelConfig, SamplingConfig

Quant = Literal["4bit", "none"]
QUANTS: tuple[Quant, ...] = ("4bit", "none")


def build_random_qwen2(out: Path, device: str = "cuda", small: bool = False) -> int:
    """Qwen2.5-0.5B's shape (``small``: 2 layers of 128, a CPU check) with random weights,
    saved in bf16 with a small tokenizer; returns the parameter count."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hidden, intermediate, layers, heads = (128, 256, 2, 4) if small else (896, 4864, 24, 14)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model: Any = Qwen2ForCausalLM(config).to(torch.bfloat16)  # type: ignore[arg-type]
    params = int(sum(p.numel() for p in model.parameters()))
    model.save_pretrained(out)
    # Any tokenizer whose ids fit the vocabulary will do for throughput.
    corpus = ["def f(x):\n    return x * 2 + 1\n", "for i in range(10):\n    print(i)\n"] * 50
    train_tokenizer(corpus, 512).save_pretrained(out)
    del model
    return params


def _reset() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _gib(n: int) -> float:
    return round(n / 2**30, 3)


def bench_generation(
    path: Path, quantization: Quant, batch: int, new_tokens: int
) -> dict[str, Any]:
    _reset()
    cfg = ModelConfig(name=str(path), quantization=quantization, device="cuda")
    model = load_model(cfg)
    model.eval()
    loaded = torch.cuda.max_memory_allocated()
    from codealign.models.loading import load_tokenizer

    backend = TransformersBackend(model, load_tokenizer(str(path)))
    tokenizer = backend.tokenizer
    texts = [f"def f{i}(x):\n    return x * {i} + " for i in range(batch)]
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    sampling = SamplingConfig(
        n=1, temperature=0.8, max_new_tokens=new_tokens, batch_size=batch, seed=0
    )
    generate(backend, prompts[:8], SamplingConfig(n=1, max_new_tokens=8, batch_size=8), stop=())
    torch.cuda.synchronize()
    started = time.perf_counter()
    out = generate(backend, prompts, sampling, stop=())
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = sum(len(g[0].completion_ids) for g in out)
    result = {
        "quantization": quantization,
        "batch": batch,
        "new_tokens": new_tokens,
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "weights_gib": _gib(loaded),
        "peak_gib": _gib(torch.cuda.max_memory_allocated()),
    }
    del model, backend
    return result


def bench_training(
    path: Path, quantization: Quant, batch: int, seq: int, steps: int
) -> dict[str, Any]:
    _reset()
    cfg = ModelConfig(
        name=str(path),
        quantization=quantization,
        device="cuda",
        lora_r=16,
        lora_alpha=32,
    )
    model = add_lora(load_model(cfg, for_training=True), cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randint(0, 512, (batch, seq), device="cuda")
    times = []
    for step in range(steps + 2):
        torch.cuda.synchronize()
        started = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if step >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - started)
    mean = sum(times) / len(times)
    result = {
        "quantization": quantization,
        "batch": batch,
        "seq": seq,
        "trainable_params": sum(p.numel() for p in params),
        "step_seconds": round(mean, 4),
        "tokens_per_s": round(batch * seq / mean, 1),
        "peak_gib": _gib(torch.cuda.max_memory_allocated()),
    }
    del model, optimizer
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench-out"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    import bitsandbytes
    import peft
    import transformers

    report.update(
        transformers=transformers.__version__,
        peft=peft.__version__,
        bitsandbytes=bitsandbytes.__version__,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qwen2-0.5b-random"
        report["parameters"] = build_random_qwen2(path)
        report["generation"] = [
            bench_generation(path, q, args.batch, args.new_tokens) for q in ("4bit", "none")
        ]
        report["training"] = [
            bench_training(path, q, args.train_batch, args.seq, args.steps)
            for q in ("4bit", "none")
        ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_qlora.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['gpu']}, torch {report['torch']}, transformers {report['transformers']}, "
        f"peft {report['peft']}, bitsandbytes {report['bitsandbytes']}; "
        f"random Qwen2 shape, {report['parameters'] / 1e6:.0f}M parameters"
    )
    print(f"{'generation':12} {'base':6} {'tokens/s':>10} {'weights GiB':>12} {'peak GiB':>9}")
    for g in report["generation"]:
        base = "nf4" if g["quantization"] == "4bit" else "bf16"
        print(
            f"{'':12} {base:6} {g['tokens_per_s']:10.1f} {g['weights_gib']:12.3f} "
            f"{g['peak_gib']:9.3f}"
        )
    print(f"{'LoRA step':12} {'base':6} {'s/step':>10} {'tokens/s':>12} {'peak GiB':>9}")
    for t in report["training"]:
        base = "nf4" if t["quantization"] == "4bit" else "bf16"
        print(
            f"{'':12} {base:6} {t['step_seconds']:10.4f} {t['tokens_per_s']:12.1f} "
            f"{t['peak_gib']:9.3f}"
        )
    gen = {g["quantization"]: g for g in report["generation"]}
    train = {t["quantization"]: t for t in report["training"]}
    print(
        f"nf4 vs bf16: generation {gen['4bit']['tokens_per_s'] / gen['none']['tokens_per_s']:.2f}x"
        f" speed, {gen['4bit']['weights_gib'] / gen['none']['weights_gib']:.2f}x weight memory;"
        f" LoRA step {train['none']['step_seconds'] / train['4bit']['step_seconds']:.2f}x"
        f" speed, {train['4bit']['peak_gib'] / train['none']['peak_gib']:.2f}x peak memory"
    )


if __name__ == "__main__":
    main()
