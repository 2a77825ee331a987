"""Lint and types signals: one ruff and one mypy run per batch vs one run per sample.

Scores 1,000 HumanEval programs (canonical solutions, repeated) with codealign's batched
ruff and mypy signals, and a subset with one ruff and one mypy process per sample (what a
per-sample reward function does). Prints milliseconds per sample and the ratio. Usage:

    python benchmarks/bench_static_signals.py [--samples 1000] [--per-sample 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codealign.execution import ExecResult
from codealign.samples import Sample
from codealign.scoring.base import Item
from codealign.scoring.lint import lint_signal
from codealign.scoring.types import types_signal
from codealign.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--per-sample", type=int, default=40)
    args = parser.parse_args()
    tasks = load_tasks("humaneval")
    items = []
    for i in range(args.samples):
        task = tasks[i % len(tasks)]
        program = task.prompt + (task.canonical_solution or "")
        items.append(
            Item(
                task,
                Sample(task.task_id, i, 0, solution=program),
                ExecResult(task.task_id, i, "passed"),
                program,
            )
        )
    started = time.perf_counter()
    lint_signal(items)
    lint_s = time.perf_counter() - started
    started = time.perf_counter()
    types_signal(items)
    types_s = time.perf_counter() - started
    batched_ms = 1000 * (lint_s + types_s) / len(items)

    subset = items[: args.per_sample]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for it in subset:
            path = Path(tmp, "sample.py")
            path.write_text(it.program)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ruff",
                    "check",
                    "--isolated",
                    "--no-cache",
                    "--exit-zero",
                    str(path),
                ],
                capture_output=True,
                check=False,
            )
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mypy",
                    "--ignore-missing-imports",
                    "--no-incremental",
                    str(path),
                ],
                capture_output=True,
                check=False,
            )
    single_ms = 1000 * (time.perf_counter() - started) / len(subset)
    print(f"{len(items)} HumanEval programs; 2-core machine")
    print(
        f"batched ruff: {1000 * lint_s / len(items):.2f} ms/sample, batched mypy: "
        f"{1000 * types_s / len(items):.2f} ms/sample, together {batched_ms:.2f} ms/sample"
    )
    print(
        f"one ruff + one mypy process per sample ({len(subset)} samples): "
        f"{single_ms:.1f} ms/sample; batched is {single_ms / batched_ms:.0f}x faster"
    )


if __name__ == "__main__":
    main()
