"""One round of the tiny loop with sampling and execution in sequence, and overlapped
(``sampling.overlap``: each prompt's samples run in the sandbox while the next prompts are
being sampled), stage by stage, from one run each.

    python benchmarks/bench_overlap.py [--backend hf|vllm] [--prompts 408] [--sandbox auto]

On a CPU-only machine the sampler and the sandbox share the same cores, so overlap has
little to win there. A second table therefore stands in a GPU's sampler: one that spends
``--gpu-ms`` per prompt waiting (as a host thread waits on a GPU), yielding the tiny
tasks' canonical and broken solutions, sampled then executed in sequence vs overlapped.

Round 0's evaluation (sample + execute the held-out set) and round 1 (sample, execute,
score, pairs, train, evaluate) are timed from each run's times.json. Run it after the
main job (or twice): the first run on a machine builds the tiny and readability models.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from codealign.tasks import Task


def one_run(
    run_dir: Path, overlap: bool, args: argparse.Namespace
) -> tuple[dict[str, float], float]:
    argv = [
        sys.executable, "-m", "codealign.cli", "iterate", "--rounds", "1", "--run-dir",
        str(run_dir), "-q", "--set", f"execution.sandbox={args.sandbox}",
        "--set", f"sampling.backend={args.backend}",
        "--set", f"sampling.overlap={str(overlap).lower()}",
        "--set", f"iterate.prompts_per_round={args.prompts}",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    times = {}
    for r in (0, 1):
        for stage, seconds in json.loads(
            (run_dir / f"round-{r}" / "times.json").read_text()
        ).items():
            times[f"round {r} {stage}"] = seconds
    return times, wall


def gpu_like(gpu_ms: float, n: int) -> Callable[[Sequence[Task]], Iterator[list[dict[str, Any]]]]:
    """A sampler that takes no CPU: ``gpu_ms`` of waiting per prompt, then its n samples
    (a quarter of them right)."""

    def sample(tasks: Sequence[Task]) -> Iterator[list[dict[str, Any]]]:
        for task in tasks:
            time.sleep(gpu_ms / 1000)
            yield [
                {"task_id": task.task_id,
                 "completion": task.canonical_solution if j % 4 == 0 else "    return None\n"}
                for j in range(n)
            ]  # fmt: skip

    return sample


def simulated(args: argparse.Namespace, tmp: Path) -> None:
    from codealign.execution import execute_samples
    from codealign.jsonl import write_jsonl
    from codealign.loop.overlap import sample_and_execute
    from codealign.samples import in_task_order, load_samples
    from codealign.settings.execution import ExecutionConfig
    from codealign.tasks import load_tasks

    tasks = load_tasks("tiny-train")[: args.prompts]
    by_id = {t.task_id: t for t in tasks}
    config = ExecutionConfig(sandbox=args.sandbox)
    sample = gpu_like(args.gpu_ms, 8)

    started = time.perf_counter()
    write_jsonl(tmp / "seq.jsonl", in_task_order(tasks, sample(tasks)))
    sampled = time.perf_counter() - started
    execute_samples(by_id, load_samples(tmp / "seq.jsonl", by_id), config, progress=False)
    sequential = time.perf_counter() - started

    started = time.perf_counter()
    sample_and_execute(
        tasks, sample, 8, config, samples_out=tmp / "ovl.jsonl",
        results_out=tmp / "ovl-results.jsonl", sampled_by="bench", progress=False,
    )  # fmt: skip
    overlapped = time.perf_counter() - started
    executed = sequential - sampled
    print(
        f"\nGPU-like sampler ({args.gpu_ms:.0f} ms per prompt, no CPU), {len(tasks)} tiny "
        f"tasks x 8, sandbox {args.sandbox}"
    )
    print(f"sampling alone {sampled:.1f} s, execution alone {executed:.1f} s")
    print(f"{'in sequence':34} {sequential:8.1f} s")
    longer = max(sampled, executed)
    print(
        f"{'overlapped':34} {overlapped:8.1f} s   overlapped/sequential "
        f"{overlapped / sequential:.2f}; the longer of the two alone: {longer:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    parser.add_argument("--prompts", type=int, default=408, help="training prompts in the round")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--gpu-ms", type=float, default=40.0, help="the stand-in GPU's time")
    parser.add_argument("--simulated-only", action="store_true")
    args = parser.parse_args()
    if args.simulated_only:
        with tempfile.TemporaryDirectory(prefix="codealign-bench-overlap-") as tmp:
            simulated(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory(prefix="codealign-bench-overlap-") as tmp:
        sequential, seq_wall = one_run(Path(tmp) / "sequential", False, args)
        overlapped, ovl_wall = one_run(Path(tmp) / "overlapped", True, args)
    print(
        f"tiny loop, one round: {args.prompts} training prompts x 8, 96 held-out x 10, "
        f"backend {args.backend}, sandbox {args.sandbox}"
    )
    print(f"{'stage':34} {'sequential s':>12} {'overlapped s':>12}")

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    for stage in dict.fromkeys([*sequential, *overlapped]):
        print(f"{stage:34} {cell(sequential.get(stage)):>12} {cell(overlapped.get(stage)):>12}")

    def sampled_and_run(times: dict[str, float]) -> float:
        keys = ("round 1 sample", "round 1 execute", "round 1 sample+execute")
        return sum(times.get(k, 0.0) for k in keys)

    a, b = sampled_and_run(sequential), sampled_and_run(overlapped)
    print(
        f"{'round 1 sample + execute':34} {a:12.1f} {b:12.1f}   overlapped/sequential {b / a:.2f}"
    )
    print(f"{'whole command (wall)':34} {seq_wall:12.1f} {ovl_wall:12.1f}   overlapped/sequential "
          f"{ovl_wall / seq_wall:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="codealign-bench-overlap-") as tmp:
        simulated(args, Path(tmp))


if __name__ == "__main__":
    main()
