"""Per-worker pids cgroups, for bubblewrap run as root.

RLIMIT_NPROC does not bind root (and bubblewrap started by root maps the sandbox user to
root), so there a fork bomb would only stop at the job's time limit, having exhausted the
machine's process table on the way. A pids cgroup per worker caps it. Non-root users do
not need this: their sandbox's user namespace makes RLIMIT_NPROC a per-sandbox limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

_V1_PIDS = Path("/sys/fs/cgroup/pids")


def _own_v1_pids_cgroup() -> Path | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return _V1_PIDS / path.lstrip("/")
    return None


def make_pids_cgroup(limit: int) -> Path | None:
    """A fresh cgroup that allows ``limit`` processes, or None where we cannot make one."""
    if os.geteuid() != 0:
        return None
    parent = _own_v1_pids_cgroup()
    if parent is None or not (parent / "cgroup.procs").exists():
        return None
    path = parent / f"codealign-{uuid.uuid4().hex[:12]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            path.rmdir()
        return None
    return path


def remove_cgroup(path: Path) -> None:
    """Kill whatever is left in the cgroup and remove it."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        except OSError:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            path.rmdir()
            return
        time.sleep(0.02)


def in_cgroup_argv(path: Path, argv: list[str]) -> list[str]:
    """Run ``argv`` inside the cgroup: the shell moves itself in, then execs."""
    return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(path), *argv]
