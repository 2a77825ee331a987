"""One long-lived verifier behind every trainer's reward: tasks, a sandbox pool, verdicts.

TRL's reward functions, verl's score function and the reward server all hand it batches
of (task, answer) and get back typed verdicts: the pass rate on the reward tests, the
held-back tests' pass rate beside it (the overoptimisation monitor: the reward never
sees those), and on request codealign's full weighted score. The sandbox pool starts on
the first batch and serves every later one (and every thread: the server's requests
share it); ``close()`` ends it, and so do garbage collection and interpreter exit.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from codealign.errors import InputError
from codealign.execution.executor import Executor, make_executor
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult
from codealign.samples import Sample
from codealign.scoring.heldback import held_back, is_held, reward_view
from codealign.settings.execution import ExecutionConfig
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import Task, load_tasks

#: Tasks as a built-in name, a file or folder, ``hf:...``, or the tasks themselves.
TaskSource = str | os.PathLike[str] | Iterable[Task]


class UnknownTask(InputError):
    """An answer names a task the verifier does not have."""


@dataclass(frozen=True)
class Answer:
    """One model answer to verify: a ``completion`` continuing the task's prompt, or a
    whole-program ``solution``."""

    task_id: str
    completion: str | None = None
    solution: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What running one answer gave, as a reward sees it."""

    task_id: str
    status: str  # of the reward tests (held-back ones left out), as ExecResult.status
    pass_rate: float  # of the reward tests
    passed: bool  # every reward test passed
    heldback_pass_rate: float | None  # None: the task holds no tests back
    result: ExecResult  # every test's verdict, held-back ones included
    seen: ExecResult  # the result as the reward sees it: held-back tests removed
    score: float | None = None  # codealign's weighted score, when asked for
    signals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what the server answers): per-test verdicts, the held-back ones
        marked."""
        return {
            "task_id": self.task_id,
            "status": self.status,
            "pass_rate": self.pass_rate,
            "passed": self.passed,
            "heldback_pass_rate": self.heldback_pass_rate,
            "tests": [
                {"name": t.name, "status": t.status, "message": t.message}
                for t in self.result.tests
            ],
            "message": self.result.message,
            "score": self.score,
            "signals": self.signals,
        }


def _close(holder: list[Executor | None]) -> None:
    executor = holder[0]
    holder[0] = None
    if executor is not None:
        executor.close()


class Verifier:
    """Tasks and one sandbox pool; thread-safe."""

    def __init__(
        self,
        tasks: TaskSource,
        *,
        execution: ExecutionConfig | None = None,
        scoring: ScoringConfig | None = None,
        heldback_fraction: float = 0.25,
        heldback_min_tests: int = 4,
    ) -> None:
        if not 0 <= heldback_fraction < 1:
            raise InputError("heldback_fraction must be in [0, 1)")
        self.execution = execution or ExecutionConfig()
        self.scoring = scoring or ScoringConfig()
        self.heldback_fraction = heldback_fraction
        self.heldback_min_tests = heldback_min_tests
        self.tasks: dict[str, Task] = {}
        self._short: dict[str, list[str]] = defaultdict(list)  # "901" -> ["Mbpp/901"]
        self._lock = threading.Lock()
        self._holder: list[Executor | None] = [None]
        self._finalizer = weakref.finalize(self, _close, self._holder)
        self.add(load_tasks(tasks) if isinstance(tasks, str | os.PathLike) else tasks)

    def add(self, tasks: Iterable[Task]) -> None:
        """More tasks (verl's rows carry their own); a task id already known must come with
        the same task."""
        with self._lock:
            for task in tasks:
                known = self.tasks.get(task.task_id)
                if known is not None and known != task:
                    raise InputError(f"task {task.task_id!r} given twice, differently")
                if known is None:
                    self.tasks[task.task_id] = task
                    if "/" in task.task_id:
                        self._short[task.task_id.rsplit("/", 1)[1]].append(task.task_id)

    def resolve(self, ref: object) -> Task:
        """The task ``ref`` names: its id, or (unambiguously) the dataset's own id after
        the source's prefix (MBPP's 901 for Mbpp/901)."""
        key = str(ref) if isinstance(ref, int | str) and not isinstance(ref, bool) else None
        if key is not None and key in self.tasks:
            return self.tasks[key]
        matches = self._short.get(key or "", [])
        if len(matches) == 1:
            return self.tasks[matches[0]]
        why = f"names {len(matches)} tasks" if matches else "is not a task"
        raise UnknownTask(f"task {ref!r} {why} (of {len(self.tasks)}: {self._examples()})")

    def _examples(self) -> str:
        return ", ".join(sorted(self.tasks)[:3]) + (", ..." if len(self.tasks) > 3 else "")

    def _executor(self) -> Executor:
        with self._lock:
            executor = self._holder[0]
            if executor is None:
                executor = self._holder[0] = make_executor(self.execution)
            return executor

    def verify(self, answers: Sequence[Answer], *, score: bool = False) -> list[Verdict]:
        """One verdict per answer, in order; the whole batch goes through the pool at once."""
        if not answers:
            return []
        tasks = [self.resolve(a.task_id) for a in answers]
        samples = [
            Sample(task.task_id, i, 0, a.completion, a.solution)
            for i, (task, a) in enumerate(zip(tasks, answers, strict=True))
        ]
        jobs = [Job(s.index, task, s.program(task)) for s, task in zip(samples, tasks, strict=True)]
        by_index = {r.sample_index: r for r in self._executor().run(jobs)}
        results = [by_index[i] for i in range(len(jobs))]
        verdicts = [
            _verdict(r, self._held_back(task)) for r, task in zip(results, tasks, strict=True)
        ]
        if score:
            verdicts = self._scored(tasks, samples, jobs, verdicts)
        return verdicts

    def _held_back(self, task: Task) -> frozenset[str]:
        """The task's held-back tests: picked from the tests it declares, never from what
        an answer's run reports, so no answer moves them (and ``iterate`` holds back the
        same ones)."""
        return held_back(task, self.heldback_fraction, self.heldback_min_tests)

    def _scored(
        self,
        tasks: Sequence[Task],
        samples: Sequence[Sample],
        jobs: Sequence[Job],
        verdicts: Sequence[Verdict],
    ) -> list[Verdict]:
        from codealign.scoring.base import Item
        from codealign.scoring.combine import score_items

        items = [
            Item(task, sample, v.seen, job.program)
            for task, sample, job, v in zip(tasks, samples, jobs, verdicts, strict=True)
        ]
        rows = score_items(items, self.scoring)
        return [
            dataclasses.replace(v, score=row["score"], signals=row["signals"])
            for v, row in zip(verdicts, rows, strict=True)
        ]

    def close(self) -> None:
        """End the sandbox pool (a later batch starts a fresh one)."""
        with self._lock:
            _close(self._holder)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _verdict(result: ExecResult, heldback: frozenset[str] | None) -> Verdict:
    """``result`` as a reward sees it: its reward tests' status and pass rate, and its
    held-back tests' pass rate beside them."""
    if not heldback:
        r = result
        return Verdict(r.task_id, r.status, r.pass_rate, r.passed, None, r, r)
    seen = reward_view(result, {result.task_id: heldback})
    unseen = [t for t in result.tests if is_held(t, heldback)]
    held = sum(t.passed for t in unseen) / len(unseen) if unseen else 0.0
    return Verdict(result.task_id, seen.status, seen.pass_rate, seen.passed, held, result, seen)


def monitor_summary(verdicts: Sequence[Verdict]) -> dict[str, float]:
    """The batch's reward-test and held-back pass rates over the monitored answers (what a
    trainer logs beside the reward); empty when no answer's task holds tests back."""
    watched = [v for v in verdicts if v.heldback_pass_rate is not None]
    if not watched:
        return {}
    reward = sum(v.pass_rate for v in watched) / len(watched)
    held = sum(v.heldback_pass_rate or 0.0 for v in watched) / len(watched)
    return {
        "reward_tests_pass_rate": reward,
        "heldback_tests_pass_rate": held,
        "heldback_gap": reward - held,
        "monitored": float(len(watched)),
    }
