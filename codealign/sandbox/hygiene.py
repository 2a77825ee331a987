"""The worker's own protection, and the proof that a job left nothing behind.

Standard library only (this runs inside the sandbox). The worker is PID 1 of the
sandbox's PID namespace (the kernel drops every signal its namespace sends to PID 1 that
it has no handler for, SIGKILL and SIGSTOP included) and not dumpable (a process of the
same uid without CAP_SYS_PTRACE can then neither open ``/proc/1/fd/*``, ``/proc/1/mem``,
``/proc/1/environ`` nor ptrace it). Before every job it checks, rather than assumes,
that the last one left nothing: no process, no file in a writable place, no SysV IPC
object, no POSIX message queue, no unix socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import stat
import time
from collections.abc import Callable

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3
IPC_RMID = 0
#: Filesystems that hold no job state of their own (or are checked separately).
_STATELESS_FS = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue"})


_LIBC: list[ctypes.CDLL] = []


def libc() -> ctypes.CDLL:
    """The C library, loaded once (the worker loads it before forking jobs)."""
    if not _LIBC:
        # dlopen(NULL): the interpreter's own symbols, libc's among them; no search.
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def harden_worker() -> None:
    """Make this process untouchable by the jobs it forks; raises if it cannot."""
    c = libc()
    if c.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 or c.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "cannot make the sandbox worker non-dumpable")
    # As PID 1, a signal without a handler is dropped; Python's own SIGINT handler
    # would let a job raise KeyboardInterrupt in the worker.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def worker_dumpable() -> bool:
    return bool(libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def allow_dump() -> None:
    """In a job's process: its own /proc entries readable again (it is not the worker)."""
    libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)


def reap() -> None:
    """Collect every child that has exited (processes re-parented to us included)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def other_processes() -> list[int]:
    """Every process of the sandbox but this one (only meaningful as PID 1)."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def kill_job(pid: int, own_pid_namespace: bool) -> None:
    """Kill everything the job started, double-forked daemons included."""
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    if own_pid_namespace:
        # Until every process is gone, zombies included: they still count against the
        # sandbox's process limit, and the next job must be able to fork.
        give_up = time.monotonic() + 2.0
        while time.monotonic() < give_up:
            reap()
            victims = other_processes()
            if not victims:
                break
            for victim in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, signal.SIGKILL)
            time.sleep(0.001)
    reap()


# --- files ---------------------------------------------------------------------------------


def remove_tree(top: str) -> None:
    """rmtree that also empties folders the job made unreadable; iterative, for deep trees."""
    stack = [(top, False)]
    while stack:
        path, emptied = stack.pop()
        if emptied:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            continue
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        stack.append((path, True))
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, False))
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        remove_tree(path)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def wipe(workdir: str, scratch: list[str], keep: list[str]) -> bool:
    """Empty the sandbox's scratch folders so one job leaves nothing for the next.

    ``keep`` are read-only mounts inside scratch folders (a virtualenv under /tmp, say):
    they and the folders leading to them stay, everything else goes. Returns False when
    something could not be removed.
    """
    clean = True

    def sweep(folder: str) -> None:
        nonlocal clean
        try:
            with os.scandir(folder) as it:
                entries = [entry.path for entry in it]
        except OSError:
            clean = False
            return
        for path in entries:
            if path in keep:
                continue
            if path == workdir or any(k.startswith(path + "/") for k in (*keep, workdir)):
                sweep(path)
                continue
            _remove(path)
            clean = clean and not os.path.lexists(path)

    for root in scratch:
        sweep(root)
    if not any(workdir.startswith(root + "/") for root in scratch):
        sweep(workdir)
    return clean


def _mounts() -> list[tuple[str, str, bool]]:
    """(mount point, filesystem type, writable) of every mount this process sees."""
    mounts = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields, fstype = left.split(), right.split()[:1]
            if len(fields) < 6 or not fstype:
                continue
            point = fields[4].replace("\\040", " ")
            mounts.append((point, fstype[0], "rw" in fields[5].split(",")))
    return mounts


Snapshot = dict[str, tuple[int, int, int]]


def _snapshot(points: list[str], skip: set[str], limit: int = 20_000) -> Snapshot:
    """(mode, size, mtime) of every path under ``points``, not crossing into ``skip``."""
    seen: Snapshot = {}
    stack = list(points)
    while stack and len(seen) < limit:
        path = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        seen[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
        if os.path.isdir(path) and not os.path.islink(path):
            with contextlib.suppress(OSError):
                stack += [e.path for e in os.scandir(path) if e.path not in skip]
    return seen


def _resource_limits() -> dict[int, tuple[int, int]]:
    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            which = getattr(resource, name)
            with contextlib.suppress(OSError, ValueError):
                limits[which] = resource.getrlimit(which)
    return limits


class WorkerState:
    """What a process of the same uid could change about the worker without ptrace rights:
    resource limits, priority, CPU affinity, scheduling policy, keyrings."""

    def __init__(self) -> None:
        self.limits = _resource_limits()
        self.priority = os.getpriority(os.PRIO_PROCESS, 0)
        self.affinity = os.sched_getaffinity(0)
        self.policy = os.sched_getscheduler(0)
        self.keys = _count_lines("/proc/keys")

    def changed(self) -> bool:
        return (
            _resource_limits() != self.limits
            or os.getpriority(os.PRIO_PROCESS, 0) != self.priority
            or os.sched_getaffinity(0) != self.affinity
            or os.sched_getscheduler(0) != self.policy
            or _count_lines("/proc/keys") > self.keys
        )

    def restore(self) -> None:
        """Put back what an unprivileged process may (a lowered hard limit it may not)."""
        for which, value in self.limits.items():
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(which, value)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, self.affinity)


def _count_lines(path: str) -> int:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return len(fh.read().splitlines())
    except OSError:
        return 0


class Folders:
    """The worker's folders as it found them, checked and remade before every job: a job
    that renamed, replaced with a link or took the rights of one of them must cost the
    next job nothing."""

    def __init__(self, given: str, workdir: str, scratch: list[str]) -> None:
        self.workdir = workdir
        self.modes = {}
        for root in scratch:
            with contextlib.suppress(OSError):
                self.modes[root] = stat.S_IMODE(os.lstat(root).st_mode)
        base = next((r for r in scratch if given.startswith(r + "/")), None)
        # The path from below its scratch root (or from the given folder) to the workdir.
        top = given if base is None else base
        parts = os.path.relpath(workdir, top).split(os.sep)
        self.chain = [os.path.join(top, *parts[: i + 1]) for i in range(len(parts))]
        if base is None:
            self.chain.insert(0, given)

    def restore(self) -> bool:
        """True once every folder on the way to the workdir is a real folder of ours."""
        try:
            for root, mode in self.modes.items():
                st = os.lstat(root)
                if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
                    os.chmod(root, mode)
            for path in self.chain:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    os.mkdir(path, 0o700)
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    _remove(path)
                    os.mkdir(path, 0o700)
                elif st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
                    os.chmod(path, 0o700)
        except OSError:
            return False
        return os.path.isdir(self.workdir) and os.access(self.workdir, os.W_OK | os.X_OK)


class Leftovers:
    """What a job may have left in the sandbox, checked before every job."""

    def __init__(self, workdir: str, scratch: list[str], keep: list[str], isolated: bool) -> None:
        self.workdir, self.scratch, self.keep = workdir, scratch, keep
        # Processes, IPC objects and sockets are the sandbox's own only when it has its
        # own namespaces; the unisolated backend checks its files alone.
        self.isolated = isolated
        self._sockets = _unix_sockets()
        self._state = WorkerState()
        mounts = _mounts()
        wiped = {*scratch, *keep}
        self._watched = [
            point
            for point, fstype, writable in mounts
            if writable
            and fstype not in _STATELESS_FS
            and point not in wiped
            and not any(point.startswith(s + "/") for s in wiped)
        ]
        self._skip = {point for point, _, _ in mounts} - set(self._watched)
        self._queues = [point for point, fstype, _ in mounts if fstype == "mqueue"]
        self._before = _snapshot(self._watched, self._skip)

    def find(self) -> list[str]:
        """What is left; empty when the sandbox is as the worker found it."""
        found = []
        if not self._scratch_empty():
            found.append("files in scratch folders")
        if not self.isolated:
            return found
        if other_processes():
            found.append("processes")
        if _snapshot(self._watched, self._skip) != self._before:
            found.append("files in writable places")
        for point in self._queues:
            with contextlib.suppress(OSError):
                if os.listdir(point):
                    found.append("POSIX message queues")
        for kind in ("shm", "sem", "msg"):
            if _sysv_ids(kind):
                found.append(f"SysV {kind} objects")
        if _unix_sockets() > self._sockets:
            found.append("unix sockets")
        if worker_dumpable():
            found.append("a dumpable worker")
        if self._state.changed():
            found.append("the worker's limits, priority, affinity or keyrings")
        return found

    def clear(self) -> None:
        """Remove what can be removed; ``find`` says what could not."""
        wipe(self.workdir, self.scratch, self.keep)
        if not self.isolated:
            return
        if other_processes():
            kill_job(0, own_pid_namespace=True)
        self._state.restore()
        for point in self._queues:
            with contextlib.suppress(OSError):
                for name in os.listdir(point):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(point, name))
        _remove_sysv()

    def _scratch_empty(self) -> bool:
        roots = [*self.scratch, self.workdir]
        for root in roots:
            try:
                names = os.listdir(root)
            except OSError:
                continue
            for name in names:
                path = os.path.join(root, name)
                if path in self.keep or path in roots:
                    continue
                if not any(k.startswith(path + "/") for k in (*self.keep, *roots)):
                    return False
        return True


def _sysv_ids(kind: str) -> list[int]:
    """Ids of the SysV IPC objects of one kind in this IPC namespace."""
    try:
        with open(f"/proc/sysvipc/{kind}", encoding="ascii", errors="replace") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return []
    # shm rows start "key shmid", sem "key semid", msg "key msqid".
    return [int(row.split()[1]) for row in rows if len(row.split()) > 1]


def _remove_sysv() -> None:
    c = libc()
    removers: dict[str, Callable[[int], int]] = {
        "shm": lambda i: int(c.shmctl(i, IPC_RMID, None)),
        "sem": lambda i: int(c.semctl(i, 0, IPC_RMID)),
        "msg": lambda i: int(c.msgctl(i, IPC_RMID, None)),
    }
    for kind, remove in removers.items():
        for ident in _sysv_ids(kind):
            remove(ident)


def _unix_sockets() -> int:
    """How many unix sockets (abstract or not) exist in this network namespace."""
    try:
        with open("/proc/net/unix", encoding="ascii", errors="replace") as fh:
            return len(fh.read().splitlines()) - 1
    except OSError:
        return 0
