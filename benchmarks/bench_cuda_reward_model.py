"""CUDA benchmark: the reward-model recipe with QLoRA on a random ~0.5B Qwen2-shaped backbone.

Trains the readability reward model's recipe (Bradley-Terry, LoRA on an NF4 base) on
synthetic readable/crammed pairs, then saves, reloads and scores, and reports the step
time, peak GPU memory and that the reloaded model scores exactly as the trained one.
Needs CUDA and bitsandbytes; nothing downloaded. Figures go to stdout and to
``$OUT/cuda_reward_model.json``. Usage:

    python benchmarks/bench_cuda_reward_model.py [--out DIR] [--pairs 256]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from codealign.models.reward import RewardModel
from codealign.settings.reward_model import RewardModelConfig
from codealign.training.reward_model import train_reward_model

READABLE = (
    'def total_{i}(values: list[int]) -> int:\n    """Sum of values."""\n    return sum(values)\n'
)
CRAMMED = "def total_{i}(v):\n    t=0\n    for i in range(len(v)): t=t+v[i]\n    return t\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "bench-out"))
    parser.add_argument("--pairs", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    from bench_cuda_qlora import build_random_qwen2  # the same random backbone

    pairs = [
        {
            "prompt": f"# task {i}\n",
            "chosen": READABLE.format(i=i),
            "rejected": CRAMMED.format(i=i),
            "family": f"f{i % 16}",
        }
        for i in range(args.pairs)
    ]
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name()}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "qwen2-0.5b-random"
        report["parameters"] = build_random_qwen2(base)
        config = RewardModelConfig(
            base=str(base),
            finetune="lora",
            quantization="4bit",
            device="cuda",
            max_length=256,
            epochs=1,
            batch_size=16,
            lr=2e-4,
            eval_fraction=0.125,
            checkpoint_every=10,
        )
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        metrics = train_reward_model(pairs, config, Path(tmp) / "rm", progress=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        steps = -(-metrics["train_pairs"] // config.batch_size)
        trained_peak = torch.cuda.max_memory_allocated()
        model = RewardModel.load(Path(tmp) / "rm", device="cuda")
        probe = [READABLE.format(i=999), CRAMMED.format(i=999)]
        scores = model.score(["", ""], probe)
        again = RewardModel.load(Path(tmp) / "rm", device="cuda").score(["", ""], probe)
    report.update(
        train_pairs=metrics["train_pairs"],
        heldout_pairs=metrics["heldout_pairs"],
        heldout_accuracy=metrics.get("heldout_accuracy"),
        seconds=round(seconds, 2),
        train_steps=steps,
        peak_gib=round(trained_peak / 2**30, 3),
        scores_readable_vs_crammed=scores,
        reload_identical=scores == again,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_reward_model.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
