"""The Executor protocol every sandbox backend implements, and choosing one by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from codealign.execution.backends.choice import local_executor
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult
from codealign.settings.execution import ExecutionConfig


class Executor(Protocol):
    """Runs jobs in a sandbox. ``run`` yields exactly one result per job, in any order."""

    name: str

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


def make_executor(config: ExecutionConfig) -> Executor:
    """The backend ``config.sandbox`` names, on this machine or (``cluster=ray``) on every
    node of a Ray cluster."""
    if config.cluster == "ray":
        from codealign.execution.backends.ray_cluster import ray_executor  # Ray: an extra

        return ray_executor(config)
    return local_executor(config)
