"""Generation throughput of the tiny model on CPU: codealign's batched sampling vs one
``model.generate`` call per sample (what a plain loop over prompts does).

Builds (or reuses) the embedded tiny model and samples the held-out tiny tasks. Usage:

    python benchmarks/bench_generation.py [--n 8] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from codealign.models.loading import load_model, load_tokenizer, model_path
from codealign.models.sampling import TransformersBackend
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="samples per task")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = ModelConfig(name="tiny", device="cpu")
    tokenizer = load_tokenizer(model_path(config))
    model = load_model(config)
    model.eval()
    backend = TransformersBackend(model, tokenizer)
    prompts = [t.prompt for t in load_tasks("tiny-heldout")]
    stop = SamplingConfig().stop
    rows = []
    for name, batch_size, n_prompts in (
        ("codealign batched", args.batch_size, len(prompts)),
        ("one generate per sample", 1, len(prompts) // 4),
    ):
        sampling = SamplingConfig(
            n=args.n,
            temperature=0.8,
            max_new_tokens=args.max_new_tokens,
            batch_size=batch_size,
            seed=0,
        )
        started = time.perf_counter()
        out = backend.generate(prompts[:n_prompts], sampling, stop=stop)
        seconds = time.perf_counter() - started
        tokens = sum(len(g.completion_ids) for gens in out for g in gens)
        samples = sum(len(gens) for gens in out)
        rows.append((name, samples, tokens, seconds))
    print(
        f"tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) "
        f"on CPU, {args.threads} threads, held-out tiny tasks x {args.n}"
    )
    print(
        f"{'method':26} {'samples':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} "
        f"{'samples/s':>9}"
    )
    for name, samples, tokens, seconds in rows:
        print(
            f"{name:26} {samples:8d} {tokens:7d} {seconds:8.2f} {tokens / seconds:9.1f} "
            f"{samples / seconds:9.1f}"
        )
    speedup = (rows[0][2] / rows[0][3]) / (rows[1][2] / rows[1][3])
    print(f"batched vs one per sample: {speedup:.1f}x tokens/s")


if __name__ == "__main__":
    main()
