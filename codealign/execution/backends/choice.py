"""Choosing a sandbox backend on this machine by name."""

from __future__ import annotations

import sys

from codealign.errors import InputError
from codealign.execution.backends.docker_pool import daemon_problem, docker_executor, image_present
from codealign.execution.backends.local import bwrap_executor, bwrap_path, process_executor
from codealign.execution.backends.pool_executor import PoolExecutor
from codealign.settings.execution import ExecutionConfig


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
