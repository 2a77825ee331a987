"""Per-worker cgroups for bubblewrap run as root: a job's total memory, CPU and processes.

Bubblewrap alone caps nothing in aggregate: RLIMIT_AS binds one process at a time, so a job
that forks ten children under the limit gets ten times the memory, and a fork bomb would
only stop at the job's time limit. Docker gives each container ``--memory``, ``--cpus`` and
``--pids-limit``; here each worker gets a cgroup of its own with the same caps, made and
joined while still root (the sandbox user may not write cgroup files) and removed, with
whatever is left in it, when the worker retires.

cgroup v1 (one hierarchy per controller, as on this project's CI) and the unified v2
hierarchy are both supported; v2 only where our own group's children may have the
controllers enabled (the "no internal processes" rule forbids it below a populated group
other than the root). Non-root users get no cgroups: they cannot make them without a
delegated subtree, and their sandbox's user namespace at least makes RLIMIT_NPROC a
per-sandbox limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The controllers a worker's group caps.
CONTROLLERS = ("memory", "cpu", "pids")
PREFIX = "codealign-"
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Caps:
    """What one worker (the runner, the job and all its processes) may use in total."""

    memory_bytes: int
    cpus: float
    pids: int


@dataclass(frozen=True)
class Hierarchy:
    """Our own group in one mounted hierarchy, and the wanted controllers it carries."""

    version: int  # 1 or 2
    parent: Path  # our own group: worker groups are made below it
    controllers: frozenset[str]


@dataclass(frozen=True)
class JobCgroups:
    """One worker's groups (one per hierarchy) and the controllers they cap between them."""

    paths: tuple[Path, ...]
    controllers: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_hierarchies(
    mountinfo: str, self_cgroup: str, wanted: Iterable[str] = CONTROLLERS
) -> list[Hierarchy]:
    """Where our own groups are, from /proc/self/mountinfo and /proc/self/cgroup.

    A hierarchy is listed when it carries a wanted controller and our group in it is
    visible under its mount (a mount of a subtree, as in a container, hides the rest).
    """
    wanted = frozenset(wanted)
    v1_paths: dict[frozenset[str], str] = {}
    v2_path: str | None = None
    for line in self_cgroup.splitlines():
        hierarchy_id, controllers, group = line.split(":", 2)
        if hierarchy_id == "0" and not controllers:
            v2_path = group
        elif controllers:
            v1_paths[frozenset(controllers.split(","))] = group
    found: list[Hierarchy] = []
    seen: set[Path] = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[:-2]:
            continue
        dash = fields.index("-")
        mount_root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        fstype, super_options = fields[dash + 1], fields[dash + 3].split(",")
        path: str | None
        if fstype == "cgroup":
            version, carried = 1, frozenset(super_options) & wanted
            path = next((p for c, p in v1_paths.items() if carried & c), None)
        elif fstype == "cgroup2":
            version, carried, path = 2, frozenset(), v2_path
        else:
            continue
        inside = path is not None and (
            path == mount_root or path.startswith(mount_root.rstrip("/") + "/")
        )
        if path is None or not inside:
            continue
        parent = Path(mountpoint) / path[len(mount_root) :].lstrip("/")
        if version == 2:  # what the kernel offers here: not yet known to be enableable
            with contextlib.suppress(OSError):
                carried = frozenset((parent / "cgroup.controllers").read_text().split()) & wanted
        if carried and parent not in seen:  # a hierarchy may be mounted twice
            seen.add(parent)
            found.append(Hierarchy(version, parent, carried))
    return found


def hierarchies(wanted: Iterable[str] = CONTROLLERS) -> list[Hierarchy]:
    """Our own groups in the mounted hierarchies that carry a wanted controller."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        self_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError:
        return []
    return parse_hierarchies(mountinfo, self_cgroup, wanted)


def _limit_v1(path: Path, controllers: frozenset[str], caps: Caps) -> None:
    if "memory" in controllers:
        # Memory first: memsw (memory + swap) may never be set below it.
        (path / "memory.limit_in_bytes").write_text(str(caps.memory_bytes))
        if (path / "memory.memsw.limit_in_bytes").exists():  # absent without swap accounting
            (path / "memory.memsw.limit_in_bytes").write_text(str(caps.memory_bytes))
    if "cpu" in controllers:
        (path / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(round(caps.cpus * CPU_PERIOD_US)))
    if "pids" in controllers:
        (path / "pids.max").write_text(str(caps.pids))


def _limit_v2(path: Path, controllers: frozenset[str], caps: Caps) -> None:
    if "memory" in controllers:
        (path / "memory.max").write_text(str(caps.memory_bytes))
        if (path / "memory.swap.max").exists():  # absent without swap accounting
            (path / "memory.swap.max").write_text("0")  # like docker --memory-swap = --memory
    if "cpu" in controllers:
        (path / "cpu.max").write_text(f"{round(caps.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    if "pids" in controllers:
        (path / "pids.max").write_text(str(caps.pids))


def _enable_v2(parent: Path, controllers: frozenset[str]) -> frozenset[str]:
    """The controllers a child of ``parent`` gets, enabling them where we may."""
    control = parent / "cgroup.subtree_control"
    enabled: set[str] = set()
    for controller in sorted(controllers):
        with contextlib.suppress(OSError):
            if controller not in control.read_text().split():
                # Refused (EBUSY) below a group that holds processes itself: then no v2.
                control.write_text(f"+{controller}")
            enabled.add(controller)
    return frozenset(enabled)


def make_job_cgroups(caps: Caps, found: list[Hierarchy] | None = None) -> JobCgroups | None:
    """Fresh groups that cap one worker, or None where no group can be made.

    Each hierarchy that refuses (read-only, not ours, controllers not enableable) is left
    out; ``controllers`` says what the groups made actually cap.
    """
    if os.geteuid() != 0:
        return None
    name = f"{PREFIX}{uuid.uuid4().hex[:12]}"
    paths: list[Path] = []
    capped: set[str] = set()
    for hierarchy in hierarchies() if found is None else found:
        controllers = hierarchy.controllers
        if hierarchy.version == 2:
            controllers = _enable_v2(hierarchy.parent, controllers)
        if not controllers or not (hierarchy.parent / "cgroup.procs").exists():
            continue
        path = hierarchy.parent / name
        try:
            path.mkdir()
        except OSError:
            continue
        try:
            if hierarchy.version == 1:
                _limit_v1(path, controllers, caps)
            else:
                _limit_v2(path, controllers, caps)
        except OSError:
            remove_cgroup(path)
            continue
        paths.append(path)
        capped |= controllers
    return JobCgroups(tuple(paths), frozenset(capped)) if paths else None


def remove_cgroup(path: Path) -> None:
    """Kill whatever is left in the group and remove it."""
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
