"""DPO step time with one process and with two data-parallel processes (``accelerate
launch``), each holding the whole model (DDP) or half of it (``--use_fsdp``), at the same
effective batch, on this machine's CPUs; and the model weights each process holds.

Trains LoRA on the embedded tiny model with ``--pairs`` pairs from the tiny task family
(chosen: the canonical body, rejected: a wrong one), one epoch; each run in its own
process group, timed from its train_metrics.json (training only, loading excluded).

    python benchmarks/bench_ddp.py [--pairs 128] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from codealign.tasks.tiny import tiny_tasks


def run(argv: list[str], out: Path, threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*argv, "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "train_metrics.json").read_text())
    return {
        "steps": metrics["steps"],
        "s_per_step": metrics["training_seconds"] / metrics["steps"],
        "effective_batch": metrics["effective_batch"],
        "weight_mb": metrics["weight_bytes_per_process"] / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16, help="the effective batch")
    args = parser.parse_args()
    cpus = os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="codealign-bench-ddp-") as tmp:
        pairs = Path(tmp) / "pairs.jsonl"
        rows = [
            {"prompt": t.prompt, "chosen": t.canonical_solution, "rejected": "    return None\n"}
            for t in tiny_tasks("train")[: args.pairs]
        ]
        pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
        common = ["dpo", "--pairs", str(pairs), "--model", "tiny", "--device", "cpu",
                  "--epochs", "1", "-q"]  # fmt: skip
        one = run([sys.executable, "-m", "codealign.cli", *common, "--batch-size",
                   str(args.batch)], Path(tmp) / "one", threads=cpus)  # fmt: skip
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                  "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                  "--dynamo_backend", "no", "-m", "codealign.cli"]  # fmt: skip
        two = run([*launch, *common, "--batch-size", str(args.batch // 2)], Path(tmp) / "two",
                  threads=max(1, cpus // 2))  # fmt: skip
        fsdp = [sys.executable, "-m", "accelerate.commands.launch", "--use_fsdp",
                "--fsdp_version", "2", *launch[4:]]  # fmt: skip
        sharded = run([*fsdp, *common, "--batch-size", str(args.batch // 2)],
                      Path(tmp) / "sharded", threads=max(1, cpus // 2))  # fmt: skip
    print(
        f"DPO on the tiny model, LoRA, {args.pairs} pairs, effective batch {args.batch}, "
        f"{cpus} CPU cores in all"
    )
    print(f"{'processes':32} {'steps':>6} {'s/step':>8} {'vs one':>7} {'weights MB':>11}")
    runs = (
        ("1 (all cores)", one),
        ("2, DDP (half the cores each)", two),
        ("2, FSDP (half the cores each)", sharded),
    )
    for name, r in runs:
        print(f"{name:32} {r['steps']:6d} {r['s_per_step']:8.3f} "
              f"{one['s_per_step'] / r['s_per_step']:6.2f}x {r['weight_mb']:11.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
