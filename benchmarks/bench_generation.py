"""Generation throughput of the tiny model on CPU: codealign's batched transformers
sampling, one ``model.generate`` call per sample (what a plain loop over prompts does),
and, where vLLM is installed (the vLLM venv; see the README), the vLLM backend.

Builds (or reuses) the embedded tiny model and samples the held-out tiny tasks. The vLLM
engine's start (load, profile, warm-up: once per sampling stage) is shown apart from its
generation time. Usage:

    python benchmarks/bench_generation.py [--n 8] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable

import torch

from codealign.models.loading import load_model, load_tokenizer, model_path
from codealign.models.sampling import Generation, SamplingBackend, TransformersBackend, generate
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import load_tasks

Row = tuple[str, int, int, float]


def timed(
    name: str, backend: SamplingBackend, prompts: list[list[int]], sampling: SamplingConfig
) -> Row:
    started = time.perf_counter()
    out: list[list[Generation]] = generate(backend, prompts, sampling, stop=sampling.stop)
    seconds = time.perf_counter() - started
    tokens = sum(len(g.completion_ids) for gens in out for g in gens)
    return name, sum(len(gens) for gens in out), tokens, seconds


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
    hf = TransformersBackend(model, tokenizer)
    tasks = load_tasks("tiny-heldout")
    prompts = [tokenizer(t.prompt, add_special_tokens=False)["input_ids"] for t in tasks]

    def sampling(batch_size: int) -> SamplingConfig:
        return SamplingConfig(
            n=args.n, temperature=0.8, max_new_tokens=args.max_new_tokens,
            batch_size=batch_size, seed=0,
        )  # fmt: skip

    runs: list[Callable[[], Row]] = [
        lambda: timed("hf batched", hf, prompts, sampling(args.batch_size)),
        lambda: timed("hf one generate per sample", hf, prompts[: len(prompts) // 4], sampling(1)),
    ]
    start_seconds: list[float] = []
    if importlib.util.find_spec("vllm") is not None:
        from codealign.models.vllm_backend import VLLMBackend

        vllm = VLLMBackend(config, SamplingConfig(backend="vllm"), tokenizer)

        def vllm_row() -> Row:
            name, samples, tokens, seconds = timed("vllm", vllm, prompts, sampling(args.batch_size))
            start_seconds.append(vllm.start_seconds or 0.0)
            return name + " (engine start excluded)", samples, tokens, seconds - start_seconds[0]

        runs.append(vllm_row)
    rows = [run() for run in runs]

    print(
        f"tiny model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) "
        f"on CPU, {args.threads} threads, held-out tiny tasks x {args.n}, "
        f"{args.max_new_tokens} new tokens at most"
    )
    print(f"{'backend':38} {'samples':>8} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} "
          f"{'vs hf':>6}")  # fmt: skip
    base = rows[0][2] / rows[0][3]
    for name, samples, tokens, seconds in rows:
        rate = tokens / seconds
        print(f"{name:38} {samples:8d} {tokens:7d} {seconds:8.2f} {rate:9.1f} {rate / base:5.2f}x")
    if start_seconds:
        print(f"vllm engine start (once per sampling stage): {start_seconds[0]:.1f} s")
    else:
        print("vllm: not installed in this venv (see the README: the vLLM venv)")


if __name__ == "__main__":
    main()
