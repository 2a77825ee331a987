"""The Executor protocol every sandbox backend implements, and choosing one by name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from codealign.errors import InputError
from codealign.execution.config import ExecutionConfig
from codealign.execution.judge import Job
from codealign.execution.local import LocalExecutor, bwrap_path
from codealign.execution.results import ExecResult


class Executor(Protocol):
    """Runs jobs in a sandbox. ``run`` yields exactly one result per job, in any order."""

    name: str

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...


def make_executor(config: ExecutionConfig) -> Executor:
    """The backend ``config.sandbox`` names; 'auto' takes the strongest one available."""
    if config.sandbox == "process":
        if not config.allow_unisolated:
            raise InputError(
                "the 'process' sandbox runs untrusted code with your user's rights and no "
                "isolation; pass --allow-unisolated to confirm, or use --sandbox bwrap"
            )
        return LocalExecutor(config, isolated=False)
    if bwrap_path() is None:
        hint = (
            "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap), or pass "
            "--sandbox process --allow-unisolated to run without isolation"
        )
        raise InputError(f"no sandbox available: bubblewrap (bwrap) is not installed; {hint}")
    return LocalExecutor(config, isolated=True)
