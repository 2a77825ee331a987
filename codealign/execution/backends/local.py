"""Local-process backends: workers isolated by bubblewrap, or (explicitly) not at all."""

from __future__ import annotations

import functools
import json
import os
import shutil
import site
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from codealign.execution.backends.cgroups import CONTROLLERS, Caps, make_job_cgroups, remove_cgroup
from codealign.execution.backends.pool_executor import PoolExecutor
from codealign.execution.backends.worker_pool import WorkerPool, start_together
from codealign.execution.backends.worker_program import limits_for, runner_source
from codealign.settings.execution import ExecutionConfig

SANDBOX_WORKDIR = "/tmp/jobs"
SHM_MB = 64
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}

#: Host uid and gid of the sandbox when root starts bubblewrap. Root's bubblewrap maps the
#: sandbox user to host root, to whom /proc/sys stays writable (kernel.core_pattern runs a
#: program as root on the next crash). Any unprivileged id will do and it needs no passwd
#: entry; this one is from Debian's on-demand range (60000-64999), so it owns no files.
#: Workers share it harmlessly: each sandbox has user and PID namespaces of its own.
BWRAP_HOST_UID = 64010
BWRAP_HOST_GID = 64010
#: Where root's launcher, in a mount namespace of its own, re-binds the interpreter's folders
#: below a fresh tmpfs: the unprivileged bubblewrap could not reach them where they are
#: (/root is mode 0700), and --ro-bind-fd does not help, as bubblewrap resolves the
#: descriptor back to its path, as the unprivileged user.
STAGE_DIR = "/tmp"
#: A worker's memory cgroup holds the runner and one job, as the docker backend's container.
WORKER_MEMORY_EXTRA_MB = 256
MIB = 1024 * 1024

# Run by root's bubblewrap workers (``python -I -c LAUNCHER SPEC``): join the worker's
# cgroups, stage the interpreter's folders, drop to BWRAP_HOST_UID, exec bubblewrap. It is
# an argv, not a preexec function, because the pool starts workers from argv lists.
_ROOT_LAUNCHER = """\
import ctypes, json, os, sys
spec = json.loads(sys.argv[1])
# Join while still root: the sandbox's user may not write to cgroup files.
for group in spec["cgroups"]:
    with open(group + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
if spec["sources"]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    def call(what, result):
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, what + ": " + os.strerror(err))
    call("unshare(CLONE_NEWNS)", libc.unshare(0x20000))
    # MS_REC | MS_PRIVATE before anything else, so no mount propagates back to the host.
    call("make / private", libc.mount(None, b"/", None, 0x4000 | 0x40000, None))
    # Opened in the new namespace (a bind source must be in it), before the tmpfs is
    # mounted: that may cover a source (a venv under /tmp).
    fds = [os.open(path, os.O_PATH) for path in spec["sources"]]
    stage = spec["stage"].encode()
    call("mount tmpfs", libc.mount(b"tmpfs", stage, b"tmpfs", 0x2 | 0x4, b"mode=0755"))
    for fd, target in zip(fds, spec["targets"]):
        os.mkdir(target)
        source = ("/proc/self/fd/%d" % fd).encode()
        call("bind " + target, libc.mount(source, target.encode(), None, 0x1000 | 0x4000, None))
        os.close(fd)
os.chdir("/")
os.setgroups([])
os.setresgid(spec["gid"], spec["gid"], spec["gid"])
os.setresuid(spec["uid"], spec["uid"], spec["uid"])
os.execv(spec["argv"][0], spec["argv"])
"""


def _python_dirs() -> list[str]:
    """Directories the interpreter needs: its prefixes and site-packages (for pytest)."""
    candidates = [
        sys.base_prefix,
        sys.prefix,
        sys.exec_prefix,
        str(Path(sys.executable).resolve().parent.parent),
        *site.getsitepackages(),
    ]
    dirs: list[str] = []
    for path in candidates:
        path = os.path.realpath(path)
        if (
            os.path.isdir(path)
            and path != "/"
            and not any(path == d or path.startswith(d + "/") for d in dirs)
        ):
            dirs = [d for d in dirs if not d.startswith(path + "/")] + [path]
    return sorted(dirs)


def bwrap_argv(
    config: ExecutionConfig,
    bwrap: str = "bwrap",
    staged: Sequence[str] = (),
    mode: str = "worker",
) -> list[str]:
    """The bubblewrap command line of one worker: no network, read-only system, private /tmp.

    ``staged`` lists the interpreter's folders (as :func:`bound_python_dirs` gives them) that
    root's launcher re-binds under STAGE_DIR: those are bound from there. ``mode``: the
    candidate's worker ("worker") or the judge's ("judge"), in sandboxes alike.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
        # The runner is PID 1 of the sandbox: no process of its own namespace can kill it.
        "--as-pid-1",
        # No user namespace inside: a job gets no capabilities anywhere, even its own.
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for etc in (
        "/etc/ld.so.cache",
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d",
        "/etc/alternatives",
        "/etc/localtime",
    ):
        argv += ["--ro-bind-try", etc, etc]
    argv += [
        "--proc",
        "/proc",
        # Bubblewrap covers these only when it finds them writable at setup time, which it
        # does not when started by root; the host's are the same kernel settings, read-only.
        "--ro-bind-try",
        "/proc/sys",
        "/proc/sys",
        "--ro-bind-try",
        "/proc/sysrq-trigger",
        "/proc/sysrq-trigger",
        "--dev",
        "/dev",
        # POSIX message queues of the sandbox's IPC namespace, visible so the worker can
        # check between jobs that none is left.
        "--mqueue",
        "/dev/mqueue",
        "--size",
        str(config.tmpfs_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
        "--size",
        str(SHM_MB * 1024 * 1024),
        "--tmpfs",
        "/dev/shm",
    ]
    # Bound after the tmpfs mounts, so an interpreter or venv under /tmp stays visible.
    python_dirs = bound_python_dirs()
    for path in python_dirs:
        source = stage_path(staged.index(path)) if path in staged else path
        argv += ["--ro-bind", source, path]
    # Only /tmp and /dev/shm stay writable, and the worker empties both after each job.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]
    for key, value in {**_ENV, "HOME": "/tmp"}.items():
        argv += ["--setenv", key, value]
    python = os.path.realpath(sys.executable)
    # Use the venv's interpreter path when there is one, so its site-packages are seen.
    if sys.prefix != sys.base_prefix:
        python = sys.executable
    scratch = ["/tmp", "/dev/shm"]
    settings = {
        "workdir": SANDBOX_WORKDIR,
        "scratch": scratch,
        "keep": [d for d in python_dirs if any(d.startswith(s + "/") for s in scratch)],
        "isolated": True,
    }
    runner = [python, "-I", "-c", runner_source(), mode, json.dumps(settings)]
    return [*argv, "--", *runner]


def bound_python_dirs() -> list[str]:
    """The interpreter's folders bound into the sandbox (/usr comes whole)."""
    return [d for d in _python_dirs() if not d.startswith("/usr/")]


def stage_path(index: int) -> str:
    return f"{STAGE_DIR}/python-{index}"


def root_launcher_argv(
    argv: Sequence[str], staged: Sequence[str], cgroups: Sequence[Path]
) -> list[str]:
    """Root's worker command line: join ``cgroups``, stage, drop to BWRAP_HOST_UID, exec."""
    spec = {
        "cgroups": [str(path) for path in cgroups],
        "sources": list(staged),
        "stage": STAGE_DIR,
        "targets": [stage_path(i) for i in range(len(staged))],
        "uid": BWRAP_HOST_UID,
        "gid": BWRAP_HOST_GID,
        "argv": list(argv),
    }
    return [sys.executable, "-I", "-c", _ROOT_LAUNCHER, json.dumps(spec)]


def launcher_cgroups(worker_argv: Sequence[str]) -> list[Path]:
    """The cgroups a worker started by :func:`root_launcher_argv` joined."""
    if len(worker_argv) != 5 or worker_argv[3] != _ROOT_LAUNCHER:
        return []
    return [Path(path) for path in json.loads(worker_argv[4])["cgroups"]]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def bwrap_executor(config: ExecutionConfig) -> PoolExecutor:
    """Workers isolated by bubblewrap; started by root, as an unprivileged user in cgroups.
    The judges get sandboxes of their own, made the same way."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    limits = limits_for(config, nproc_enforced=True)
    pool = _bwrap_pool(config, bwrap, "worker", warn=True)
    try:
        judges = _bwrap_pool(config, bwrap, "judge", warn=False)
    except BaseException:
        pool.close()
        raise
    start_together(pool, judges)
    return PoolExecutor(config, pool, "bwrap", limits, judges)


def _bwrap_pool(config: ExecutionConfig, bwrap: str, mode: str, *, warn: bool) -> WorkerPool:
    if os.geteuid() != 0:
        return WorkerPool(bwrap_argv(config, bwrap, mode=mode), {}, config.workers, wait=False)
    staged = bound_python_dirs()
    argv = bwrap_argv(config, bwrap, staged, mode)
    # The worker, bubblewrap's own processes and the job's all count.
    caps = Caps(
        memory_bytes=(config.memory_mb + WORKER_MEMORY_EXTRA_MB) * MIB,
        cpus=1.0,
        pids=config.max_processes + 8,
    )
    probe = make_job_cgroups(caps)
    for path in probe.paths if probe is not None else ():
        remove_cgroup(path)
    capped = probe.controllers if probe is not None else frozenset()
    if (missing := [c for c in CONTROLLERS if c not in capped]) and warn:
        _warn_uncapped(missing)
    made: set[Path] = set()
    lock = threading.Lock()

    def launch() -> list[str]:
        groups = make_job_cgroups(caps) if capped else None
        paths = groups.paths if groups is not None else ()
        with lock:
            made.update(paths)
        return root_launcher_argv(argv, staged, paths)

    def release(worker_argv: Sequence[str]) -> None:
        for path in launcher_cgroups(worker_argv):
            remove_cgroup(path)
            with lock:
                made.discard(path)

    def sweep() -> None:
        # Groups of workers that never started (or never retired) go too.
        with lock:
            left = list(made)
            made.clear()
        for path in left:
            remove_cgroup(path)

    try:
        # The sandbox's user is no longer root, and has a user namespace of its own.
        return WorkerPool(launch, {}, config.workers, on_close=sweep, on_retire=release, wait=False)
    except BaseException:
        sweep()
        raise


def _warn_uncapped(missing: Sequence[str]) -> None:
    effects = {
        "memory": "a job's processes get the memory limit each, not together",
        "cpu": "a job may use every core",
        "pids": "a fork bomb is stopped only by the time limit",
    }
    print(
        f"codealign: warning: running bubblewrap as root without a {', '.join(missing)} "
        f"cgroup: {'; '.join(effects[c] for c in missing)} (use --sandbox docker)",
        file=sys.stderr,
    )


def process_executor(config: ExecutionConfig) -> PoolExecutor:
    """Workers with no isolation at all: only when the user asked for it (the judges too)."""
    pools = []
    for mode in ("worker", "judge"):
        tmp = tempfile.mkdtemp(prefix=f"codealign-{mode}s-")
        argv = [sys.executable, "-I", "-c", runner_source(), mode, json.dumps({"workdir": tmp})]
        pools.append(
            WorkerPool(
                argv,
                {**_ENV, "HOME": tmp},
                config.workers,
                on_close=functools.partial(shutil.rmtree, tmp, ignore_errors=True),
                wait=False,
            )
        )
    start_together(*pools)
    limits = limits_for(config, nproc_enforced=False)
    return PoolExecutor(config, pools[0], "process", limits, pools[1])
