"""Sampling and execution at once: each prompt's samples go to the sandbox as soon as
they are sampled, so the GPU generates while the CPUs run tests.

Both halves survive ``kill -9``. Samples are journaled in ``samples.jsonl.partial``, a
prompt's whole group in one flushed, fsynced write; results in ``results.jsonl.partial``
(the execute checkpoint, one line per result with the digest of its job). A rerun keeps
the prompts whose groups are whole and the results of exactly those jobs, samples only
the prompts that are missing, and runs only the jobs without a result. The finished
files are then written atomically in task order, and only then are the journals removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from codealign.execution import ExecResult
from codealign.jsonl import write_jsonl
from codealign.samples import Sample, load_samples, sample_from_record
from codealign.settings.execution import ExecutionConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import Task

#: Samples ``tasks``, yielding each task's records (all of them at once) as they are done.
GroupStream = Callable[[Sequence[Task]], Iterator[list[dict[str, Any]]]]


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


class SamplesJournal:
    """``OUT.partial`` for samples: a header naming what is sampled, then whole groups."""

    def __init__(self, path: Path, identity: str, n: int, tasks: Mapping[str, Task]) -> None:
        self.path, self.n = path, n
        self.header = {"sampling": identity}
        self.groups = self._recover(tasks)
        # Rewrite what was kept, so a torn group never sits before the groups that follow.
        write_jsonl(path, [self.header, *(r for g in self.groups.values() for r in g)])
        self._sink = path.open("a", encoding="utf-8")

    def _recover(self, tasks: Mapping[str, Task]) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        with contextlib.suppress(OSError), self.path.open(encoding="utf-8") as fh:
            try:
                if json.loads(fh.readline()) != self.header:
                    return {}  # another model, adapter or seed: start over
            except ValueError:
                return {}
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    break  # a torn write: nothing after it was written whole
                if isinstance(record, dict) and record.get("task_id") in tasks:
                    groups.setdefault(record["task_id"], []).append(record)
        return {task_id: g for task_id, g in groups.items() if len(g) == self.n}

    def add(self, group: list[dict[str, Any]]) -> None:
        self._sink.write("".join(json.dumps(record) + "\n" for record in group))
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self.groups[group[0]["task_id"]] = group

    def close(self) -> None:
        self._sink.close()


def identity(model: ModelConfig, sampling: SamplingConfig) -> str:
    """A digest of what shapes the samples (not of the engine that draws them): a journal
    is resumed only by the same policy under the same sampling settings."""
    engine = ("backend", "overlap", "tensor_parallel_size", "gpu_memory_utilization", "batch_size")
    shaping = {k: v for k, v in dataclasses.asdict(sampling).items() if k not in engine}
    blob = json.dumps([dataclasses.asdict(model), shaping], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def sample_and_execute(
    tasks: Sequence[Task],
    sample: GroupStream,
    n: int,
    config: ExecutionConfig,
    *,
    samples_out: Path,
    results_out: Path,
    sampled_by: str,
    progress: bool = True,
    reuse_samples: bool = True,
) -> tuple[list[Sample], list[ExecResult]]:
    """Sample ``n`` completions per task and run each in the sandbox as soon as its task's
    group is done; write ``samples_out`` and ``results_out``. ``sampled_by`` identifies
    the sampler (model, adapter, settings): a journal of another one is not resumed. An
    existing ``samples_out`` is taken as sampled in full unless ``reuse_samples`` is off
    (then it is replaced, atomically, at the end)."""
    from codealign.execution import execute_stream, write_results

    by_id = {task.task_id: task for task in tasks}
    position = {task.task_id: i for i, task in enumerate(tasks)}
    reused = reuse_samples and samples_out.exists()
    if reused:  # sampled in full before a crash: only execution is left
        finished = load_samples(samples_out, by_id)
        journal = None
        groups: dict[str, list[dict[str, Any]]] = {}
        for s in finished:
            groups.setdefault(s.task_id, []).append(s.record)
    else:
        journal = SamplesJournal(partial_path(samples_out), sampled_by, n, by_id)
        groups = journal.groups

    def as_samples(group: list[dict[str, Any]]) -> list[Sample]:
        task_id = group[0]["task_id"]
        if len(group) != n or any(r.get("task_id") != task_id for r in group):
            raise RuntimeError(f"the sampler returned {len(group)} samples of {task_id}, not {n}")
        base = position[task_id] * n  # the sample's line in the finished, task-ordered file
        return [sample_from_record(r, base + j, j) for j, r in enumerate(group)]

    def stream() -> Iterator[Sample]:
        for group in list(groups.values()):
            yield from as_samples(group)
        missing = [task for task in tasks if task.task_id not in groups]
        if missing:
            assert journal is not None
            for group in sample(missing):
                if group:
                    journal.add(group)
                    yield from as_samples(group)

    checkpoint = partial_path(results_out)
    try:
        done = execute_stream(
            by_id, stream(), config, checkpoint=checkpoint, progress=progress, total=len(tasks) * n
        )
    finally:
        if journal is not None:
            journal.close()
    records = [record for task in tasks for record in groups[task.task_id]]
    samples = [sample_from_record(r, i, i % n) for i, r in enumerate(records)]
    results = [done[s.index] for s in samples]
    if not reused:
        write_jsonl(samples_out, records)
    write_results(results_out, samples, results, checkpoint)
    partial_path(samples_out).unlink(missing_ok=True)
    return samples, results
