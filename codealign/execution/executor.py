"""The Executor protocol every sandbox backend implements, and choosing one by name."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Protocol

from codealign.errors import InputError
from codealign.execution.docker_pool import daemon_problem, docker_executor, image_present
from codealign.execution.judge import Job
from codealign.execution.local import bwrap_executor, bwrap_path, process_executor
from codealign.execution.pool_executor import PoolExecutor
from codealign.execution.results import ExecResult
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
        from codealign.execution.ray_cluster import ray_executor

        return ray_executor(config)
    return local_executor(config)


def local_executor(config: ExecutionConfig) -> PoolExecutor:
    """The backend ``config.sandbox`` names; 'auto' takes the strongest one available."""
    if config.sandbox == "process":
        if not config.allow_unisolated:
            raise InputError(
                "the 'process' sandbox runs untrusted code with your user's rights and no "
                "isolation; pass --allow-unisolated to confirm, or use --sandbox bwrap"
            )
        return process_executor(config)
    if config.sandbox == "docker":
        return docker_executor(config, config.image)
    if config.sandbox == "auto" and daemon_problem(timeout=5) is None:
        if image_present(config.image):
            return docker_executor(config, config.image)
        print(
            f"codealign: note: Docker answers but the image {config.image} is not built "
            "('codealign sandbox build'); using bubblewrap",
            file=sys.stderr,
        )
    if bwrap_path() is None:
        hint = (
            "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or start "
            "Docker and run 'codealign sandbox build', or pass --sandbox process "
            "--allow-unisolated to run without isolation"
        )
        raise InputError(f"no sandbox available: bubblewrap (bwrap) is not installed; {hint}")
    return bwrap_executor(config)
