"""The first run's builds: where their time goes, and what makes them faster.

1. The readability model's training step, the same batches of the built-in pairs run
   two ways: every step's 32 sequences in one pass padded to the longest (what
   codealign did before), and in length groups (``codealign.batching``, what it does
   now). Printed: seconds per step, tokens run per step (padding included), the ratio,
   and the largest difference between the two ways' rewards (float rounding only).
2. The tiny model's SFT step in fp32, as the build runs it, and under bf16 autocast, the
   alternative a user would reach for; with the matmul throughput that the fp32 step
   reaches (its FLOPs estimated as 6 x parameters x tokens).
3. ``--full``: both models built from scratch into a temporary cache, timed phase by
   phase (the lines the first run prints), with each saved file's sha256 so that two
   checkouts can be compared byte for byte.

    python benchmarks/bench_build.py [--steps 20] [--full]

Needs the tiny model (built on first use, about 2 minutes) and a sandbox for the pairs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def readability_steps(steps: int) -> None:
    from codealign.models.reward import RewardModel
    from codealign.readability.default_model import default_config
    from codealign.readability.pairs import builtin_pairs, pair_records
    from codealign.training.losses import bradley_terry_loss
    from codealign.training.reward_model import split_pairs

    config = default_config()
    pairs, _ = builtin_pairs()
    train, _ = split_pairs(pair_records(pairs), config.eval_fraction, config.seed)
    rows: dict[str, tuple[float, float]] = {}
    rewards: dict[str, torch.Tensor] = {}
    for way in ("one padded pass", "length groups"):
        torch.manual_seed(config.seed)
        model = RewardModel.create(config.model_config(), finetune="full", max_length=256)
        encoded = [
            (model.encode(p["prompt"], p["chosen"]), model.encode(p["prompt"], p["rejected"]))
            for p in train
        ]
        order = list(range(len(encoded)))
        random.Random(config.seed * 7919).shuffle(order)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        model.train()
        took, tokens = [], 0
        for step in range(steps + 2):
            batch = [encoded[i] for i in order[step * config.batch_size :][: config.batch_size]]
            seqs = [c for c, _ in batch] + [r for _, r in batch]
            start = time.perf_counter()
            if way == "length groups":
                out = model.rewards(seqs)
                tokens += _grouped_tokens(seqs) if step >= 2 else 0
            else:
                out = model.padded_rewards(seqs)
                tokens += len(seqs) * max(map(len, seqs)) if step >= 2 else 0
            loss = bradley_terry_loss(out[: len(batch)], out[len(batch) :])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:  # the first steps warm the allocator and the kernels up
                took.append(time.perf_counter() - start)
        rows[way] = (sum(took) / len(took), tokens / steps)
        rewards[way] = out.detach()
    base = rows["one padded pass"][0]
    print(f"\nreadability model training step ({steps} steps of {config.batch_size} pairs)")
    print(f"{'':18} {'s/step':>8} {'tokens/step':>12} {'speedup':>8}")
    for way, (seconds, tokens_per_step) in rows.items():
        print(f"{way:18} {seconds:8.3f} {tokens_per_step:12.0f} {base / seconds:7.2f}x")
    gap = (rewards["one padded pass"] - rewards["length groups"]).abs().max().item()
    print(f"largest reward difference after {steps} steps: {gap:.2e}")


def _grouped_tokens(seqs: list[list[int]]) -> int:
    from codealign.batching import length_groups

    groups = length_groups([len(s) for s in seqs])
    return sum(len(g) * max(len(seqs[i]) for i in g) for g in groups)


def sft_steps(steps: int) -> None:
    from transformers import AutoTokenizer

    from codealign.models.tiny import TinyRecipe, ensure_tiny_model, sft_batches, tiny_llama
    from codealign.tasks.tiny import sft_examples

    recipe = TinyRecipe()
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    examples = sft_examples(recipe.sft_examples, seed=recipe.seed)
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    completions = tokenizer([e.completion for e in examples], add_special_tokens=False)
    eos = tokenizer.eos_token_id
    rows = [(p, [*c, eos]) for p, c in zip(prompts, completions["input_ids"], strict=True)]
    print(f"\ntiny model SFT step ({steps} steps of {recipe.batch_size} examples)")
    print(f"{'':18} {'s/step':>8} {'GFLOP/s':>8} {'speedup':>8}")
    base = 0.0
    for way in ("fp32 (the build)", "bf16 autocast"):
        torch.manual_seed(recipe.seed)
        model = tiny_llama(len(tokenizer), recipe, eos)
        params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
        batches = sft_batches(rows, recipe.batch_size, eos, random.Random(recipe.seed))
        took, tokens = [], 0
        for step in range(steps + 2):
            batch = next(batches)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=way == "bf16 autocast"):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:
                took.append(time.perf_counter() - start)
                tokens += batch["input_ids"].numel()
        seconds = sum(took) / len(took)
        base = base or seconds
        flops = 6 * params * tokens / steps / seconds / 1e9
        print(f"{way:18} {seconds:8.3f} {flops:8.0f} {base / seconds:7.2f}x")


def full_builds() -> None:
    """Both builds in a fresh cache, in a child process (so its imports count too)."""
    with tempfile.TemporaryDirectory() as cache:
        script = (
            "from codealign.models.tiny import ensure_tiny_model as t\n"
            "from codealign.readability.default_model import "
            "ensure_default_readability_model as r\n"
            "print(t(log=print)); print(r(log=print))\n"
        )
        env = {**os.environ, "CODEALIGN_CACHE": cache}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        total = time.perf_counter() - start
        print("\nfull builds in a fresh cache")
        for line in done.stdout.splitlines():
            if " built in " in line or " trained in " in line:
                print(" ", line.removeprefix("codealign: "))
        print(f"  both, from a cold start: {total:.0f} s")
        for folder in sorted((Path(cache) / "models").iterdir()):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
                print(f"  {digest}  {folder.name}/{path.relative_to(folder)}")


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--full", action="store_true", help="also build both from scratch")
    args = parser.parse_args(argv)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    readability_steps(args.steps)
    sft_steps(args.steps)
    if args.full:
        full_builds()


if __name__ == "__main__":
    main()
