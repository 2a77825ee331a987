"""Local-process backends: workers isolated by bubblewrap, or (explicitly) not at all."""

from __future__ import annotations

import json
import os
import shutil
import site
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from codealign.execution.cgroups import in_cgroup_argv, make_pids_cgroup, remove_cgroup
from codealign.execution.config import ExecutionConfig
from codealign.execution.pool_executor import PoolExecutor
from codealign.execution.worker_pool import WorkerPool

SANDBOX_WORKDIR = "/tmp/jobs"
SHM_MB = 64
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def runner_source() -> str:
    """The in-sandbox runner's source; passed with ``-c`` so nothing needs mounting."""
    return resources.files("codealign.sandbox").joinpath("runner.py").read_text("utf-8")


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


def bwrap_argv(config: ExecutionConfig, bwrap: str = "bwrap") -> list[str]:
    """The bubblewrap command line of one worker: no network, read-only system, private /tmp."""
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        "65534",
        "--gid",
        "65534",
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
        "--dev",
        "/dev",
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
    python_dirs = [d for d in _python_dirs() if not d.startswith("/usr/")]
    for path in python_dirs:
        argv += ["--ro-bind", path, path]
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
    }
    runner = [python, "-I", "-c", runner_source(), "worker", json.dumps(settings)]
    return [*argv, "--", *runner]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


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


def bwrap_executor(config: ExecutionConfig) -> PoolExecutor:
    """Workers isolated by bubblewrap (each in a pids cgroup of its own when run as root)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    argv = bwrap_argv(config, bwrap)
    if os.geteuid() != 0:
        pool = WorkerPool(argv, {}, config.workers)
        return PoolExecutor(config, pool, "bwrap", limits_for(config, nproc_enforced=True))
    if (probe := make_pids_cgroup(1)) is None:
        print(
            "codealign: warning: running bubblewrap as root without a pids cgroup: a fork "
            "bomb is stopped only by the time limit (use --sandbox docker)",
            file=sys.stderr,
        )
        pool = WorkerPool(argv, {}, config.workers)
        return PoolExecutor(config, pool, "bwrap", limits_for(config, nproc_enforced=False))
    remove_cgroup(probe)

    def in_cgroup() -> list[str]:
        # The worker, bwrap's own init and the job's processes all count.
        cgroup = make_pids_cgroup(config.max_processes + 8)
        return argv if cgroup is None else in_cgroup_argv(cgroup, argv)

    def release(worker_argv: Sequence[str]) -> None:
        if worker_argv[0] == "/bin/sh":
            remove_cgroup(Path(worker_argv[3]))

    pool = WorkerPool(in_cgroup, {}, config.workers, on_retire=release)
    return PoolExecutor(config, pool, "bwrap", limits_for(config, nproc_enforced=False))


def process_executor(config: ExecutionConfig) -> PoolExecutor:
    """Workers with no isolation at all: only when the user asked for it."""
    tmp = tempfile.mkdtemp(prefix="codealign-jobs-")
    settings = json.dumps({"workdir": tmp})
    argv = [sys.executable, "-I", "-c", runner_source(), "worker", settings]
    pool = WorkerPool(
        argv,
        {**_ENV, "HOME": tmp},
        config.workers,
        on_close=lambda: shutil.rmtree(tmp, ignore_errors=True),
    )
    return PoolExecutor(config, pool, "process", limits_for(config, nproc_enforced=False))
