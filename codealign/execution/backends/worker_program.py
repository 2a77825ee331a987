"""What every pool backend gives its workers: the worker program and each job's limits."""

from __future__ import annotations

from typing import Any

from codealign.sandbox import worker_source
from codealign.settings.execution import ExecutionConfig


def runner_source() -> str:
    """The in-sandbox worker as one program; passed with ``-c`` so nothing needs mounting."""
    return worker_source()


def limits_for(config: ExecutionConfig, *, nproc_enforced: bool) -> dict[str, Any]:
    """The per-job limits the runner applies inside the sandbox."""
    return {
        "timeout_s": config.timeout_s,
        "memory_mb": config.memory_mb,
        "file_size_mb": config.file_size_mb,
        "max_output_bytes": config.max_output_bytes,
        # RLIMIT_NPROC counts every process of the user; only a sandbox with a user of its
        # own makes it a per-sandbox limit that cannot starve the host user.
        "max_processes": config.max_processes if nproc_enforced else 0,
    }
