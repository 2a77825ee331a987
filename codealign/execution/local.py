"""Local-process backends: workers isolated by bubblewrap, or (explicitly) not at all."""

from __future__ import annotations

import json
import os
import shutil
import site
import sys
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from importlib import resources
from pathlib import Path

from codealign.execution.config import ExecutionConfig
from codealign.execution.judge import Job, job_payload, judge
from codealign.execution.outside import Fallback, plan_for, run_outside
from codealign.execution.results import ExecResult
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


class LocalExecutor:
    """Runs jobs in a pool of local runner workers, isolated by bwrap or not at all."""

    def __init__(self, config: ExecutionConfig, *, isolated: bool) -> None:
        self.config = config
        self.name = "bwrap" if isolated else "process"
        self._limits = {
            "timeout_s": config.timeout_s,
            "memory_mb": config.memory_mb,
            "file_size_mb": config.file_size_mb,
            "max_output_bytes": config.max_output_bytes,
            # RLIMIT_NPROC counts every process of the user; only a user namespace of its
            # own (bwrap) makes it a per-sandbox limit that cannot starve the host user.
            "max_processes": config.max_processes if isolated else 0,
        }
        if isolated:
            bwrap = bwrap_path()
            if bwrap is None:
                raise RuntimeError("bubblewrap (bwrap) is not installed")
            self._pool = WorkerPool(bwrap_argv(config, bwrap), {}, config.workers)
        else:
            tmp = tempfile.mkdtemp(prefix="codealign-jobs-")
            settings = json.dumps({"workdir": tmp})
            argv = [sys.executable, "-I", "-c", runner_source(), "worker", settings]
            self._pool = WorkerPool(
                argv,
                {**_ENV, "HOME": tmp},
                config.workers,
                on_close=lambda: shutil.rmtree(tmp, ignore_errors=True),
            )

    def _run(self, job: Job) -> ExecResult:
        payload = job_payload(job, self._limits)
        timeout = self.config.timeout_s
        plan = plan_for(job.task)
        if plan is not None:
            try:
                with self._pool.session() as session:
                    reply = run_outside(session, job.task, plan, payload, timeout)
                return judge(job, None if reply.get("lost") else reply)
            except Fallback:
                pass  # decided by the task's own test code: judge this one inside
        return judge(job, self._pool.request(payload, timeout))

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]:
        """Yield one result per job, in completion order."""
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="codealign-exec") as pool:
            futures = [pool.submit(self._run, job) for job in jobs]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:
                    future.cancel()

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
