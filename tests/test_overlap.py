"""Sampling and execution at once: tests run while sampling goes on, and a run killed
with SIGKILL mid-way resumes without redoing anything finished or trusting anything torn.

The sampler is a fake (a deterministic function of the task); execution is real, in the
bubblewrap sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from codealign.execution import ExecutionConfig, Job
from codealign.execution import execute as execute_module
from codealign.loop.overlap import partial_path, sample_and_execute
from codealign.tasks import Task
from codealign.tasks.tiny import tiny_tasks

N = 3
TASKS = tiny_tasks("heldout")[:8]


def group(task: Task) -> list[dict[str, Any]]:
    """Sample j of a task: right for j = 0, wrong otherwise."""
    wrong = "    return None\n"
    return [
        {"task_id": task.task_id, "completion": task.canonical_solution if j == 0 else wrong}
        for j in range(N)
    ]


class Sampler:
    def __init__(self, on_group: Any = None) -> None:
        self.asked: list[str] = []
        self.on_group = on_group

    def __call__(self, tasks: Sequence[Task]) -> Iterator[list[dict[str, Any]]]:
        self.asked += [t.task_id for t in tasks]
        for task in reversed(tasks):  # finished out of order, as vLLM does
            if self.on_group is not None:
                self.on_group(task)
            yield group(task)


def run(tmp_path: Path, config: ExecutionConfig, sampler: Sampler) -> tuple[Any, Any]:
    return sample_and_execute(
        TASKS,
        sampler,
        N,
        config,
        samples_out=tmp_path / "samples.jsonl",
        results_out=tmp_path / "results.jsonl",
        sampled_by="fake",
        progress=False,
    )


@pytest.mark.sandbox
def test_files_are_in_task_order_and_match_sequential_execution(
    bwrap_config: ExecutionConfig, tmp_path: Path
) -> None:
    samples, results = run(tmp_path, bwrap_config, Sampler())
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").open()]
    assert records == [r for task in TASKS for r in group(task)]
    assert [s.index for s in samples] == list(range(len(TASKS) * N))
    assert [r.passed for r in results] == [j == 0 for _ in TASKS for j in range(N)]
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").open()]
    assert [(r["task_id"], r["completion_id"]) for r in rows] == [
        (t.task_id, j) for t in TASKS for j in range(N)
    ]
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.sandbox
def test_tests_run_while_sampling_goes_on(bwrap_config: ExecutionConfig, tmp_path: Path) -> None:
    """The sampler holds back its second group until the first group's results are in
    the checkpoint: without overlap this would wait forever (here: fail after 60 s)."""
    checkpoint = partial_path(tmp_path / "results.jsonl")
    seen: list[int] = []

    def wait_for_results(task: Task) -> None:
        if task is TASKS[-1]:
            return  # the first group out
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = checkpoint.read_text().splitlines() if checkpoint.exists() else []
            if len(lines) > 1:
                seen.append(len(lines) - 1)
                return
            time.sleep(0.02)
        raise AssertionError("no result came back while sampling was going on")

    run(tmp_path, bwrap_config, Sampler(wait_for_results))
    assert seen and seen[0] >= 1


@pytest.mark.sandbox
def test_the_first_group_comes_before_the_execution_bar(
    bwrap_config: ExecutionConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model built on first use by the sampler announces itself before the executing bar
    is drawn, not on that bar's line."""
    events: list[str] = []
    real_tqdm = execute_module.tqdm

    def tqdm(*args: Any, **kwargs: Any) -> Any:
        events.append("bar")
        return real_tqdm(*args, **kwargs)

    monkeypatch.setattr(execute_module, "tqdm", tqdm)
    run(tmp_path, bwrap_config, Sampler(lambda task: events.append(task.task_id)))
    assert events[:2] == [TASKS[-1].task_id, "bar"]


DRIVER = """
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_overlap import TASKS, N, group, run, Sampler
from codealign.execution import ExecutionConfig
config = ExecutionConfig(sandbox="bwrap", workers=2, timeout_s=3.0)
slow = Sampler(lambda task: time.sleep(0.4))
run(Path({out!r}), config, slow)
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.sandbox
def test_kill_9_mid_way_resumes_without_redoing_or_trusting_torn_work(
    bwrap_config: ExecutionConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = partial_path(tmp_path / "samples.jsonl")
    checkpoint = partial_path(tmp_path / "results.jsonl")
    code = DRIVER.format(tests=str(Path(__file__).parent), out=str(tmp_path))
    first = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    # Kill it once three groups are journaled and some of their results are in.
    while time.monotonic() < deadline and first.poll() is None:
        if len(lines(journal)) >= 1 + 3 * N and len(lines(checkpoint)) >= 2:
            break
        time.sleep(0.02)
    assert first.poll() is None, first.stderr.read().decode()[-2000:] if first.stderr else ""
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "samples.jsonl").exists()

    # A crash can tear the last write of either file: a group cut short, a line cut short.
    kept = [json.loads(line) for line in lines(journal)[1:]]
    whole = {r["task_id"] for r in kept}
    torn_task = next(t for t in reversed(TASKS) if t.task_id not in whole)
    with journal.open("a") as fh:
        fh.write(json.dumps(group(torn_task)[0]) + "\n" + '{"task_id": "tiny/')
    finished = {json.loads(line)["sample_index"] for line in lines(checkpoint)[1:]}
    with checkpoint.open("a") as fh:
        fh.write('{"job": "0123", "task_id": "tiny/00')

    executed: list[int] = []
    real = execute_module.make_executor  # type: ignore[attr-defined]

    def counting(config: ExecutionConfig) -> Any:
        executor = real(config)
        run_jobs = executor.run

        def run_counted(jobs: Any) -> Any:
            def seen() -> Iterator[Job]:
                for job in jobs:
                    executed.append(job.sample_index)
                    yield job

            return run_jobs(seen())

        executor.run = run_counted  # type: ignore[method-assign]
        return executor

    monkeypatch.setattr(execute_module, "make_executor", counting)
    sampler = Sampler()
    _, results = run(tmp_path, bwrap_config, sampler)

    # Only the tasks without a whole group were sampled again (the torn one among them)...
    assert set(sampler.asked) == {t.task_id for t in TASKS} - whole
    assert torn_task.task_id in sampler.asked
    # ... only jobs without a result ran, and every job has exactly one result.
    assert not finished & set(executed)
    assert sorted(executed + sorted(finished)) == list(range(len(TASKS) * N))
    assert [r.passed for r in results] == [j == 0 for _ in TASKS for j in range(N)]
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").open()]
    assert records == [r for task in TASKS for r in group(task)]
    assert not journal.exists() and not checkpoint.exists()
