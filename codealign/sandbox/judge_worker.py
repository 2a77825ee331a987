"""The judge worker: runs the task's side of each job in a sandbox of its own.

Standard library only; started like the candidate's worker (``python3 -I -c <bundle>
judge SETTINGS_JSON``) in its own bubblewrap sandbox or container, paired with a
candidate's worker by codealign's executor. codealign's process writes one job per line
(``{"judge": {...}}``), with one end of the job's line to the candidate's process riding
on it (``"line": true``, the descriptor passed with ``SCM_RIGHTS``). The worker hands both
to a child process, which runs the task's tests (``judging``), makes each call into the
candidate over that line (or, with no line, asks codealign's process: ``{"call": ...}``,
answered with ``{"answer": ...}``), hangs up, and reports ``{"result": [events]}``. The
worker then writes ``{"final": true, ...}``: the job's end, or that its child was killed
at the deadline. Only that child ever holds the line, so the candidate's process sees it
close when the judge is done.

A child serves the consecutive jobs of one task (check and asserts suites: a fresh
namespace per job, the task's code compiled once), so a job costs no fork and no
copy-on-write of a fresh process; a job of another task, any pytest suite, and any job
whose child ran past its deadline or died get a new child. Children are capped (address
space, CPU seconds per job, file size) and killed with everything they started at the
deadline, so no value a candidate returns (a hash-colliding set, a string that makes the
test's regex explode) and no task code can stall or swell anything but this sandbox, and
one task's code never shares a process with another's. After every job, every process but
the worker and that child is killed and the scratch folders are emptied.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from codealign.sandbox.candidate import describe
from codealign.sandbox.hygiene import kill_job, other_processes, reap, remove_tree, wipe
from codealign.sandbox.judge_line import Direct, Relayed
from codealign.sandbox.judging import Compiled, run_judge_job
from codealign.sandbox.protocol import LineReader, send_with_fds, write_all
from codealign.sandbox.worker_start import start

#: Time the judge gets past the candidate's deadline to finish and report.
GRACE_S = 1.0
#: Tasks whose compiled code a worker keeps.
CACHE_TASKS = 512
MIB = 1 << 20


def _limit(kind: int, soft: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        hard = resource.getrlimit(kind)[1]
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(kind, (soft, hard))


@dataclass
class _Child:
    """A child serving one task's jobs: jobs go down ``jobs_fd``, "done" comes back."""

    pid: int
    key: tuple[str, ...]
    jobs_fd: int
    status_fd: int

    def close(self, isolated: bool) -> None:
        kill_job(self.pid, isolated)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self._close_fds()

    def retire(self, isolated: bool) -> None:
        """Kill an idle child, and in a sandbox of our own everything its task started
        (a process its code left in a session of its own included), without waiting: a
        killed process runs no more code, and it is reaped after the next job instead of
        before it. The next task's code never runs beside this one's."""
        victims = [v for v in other_processes() if v != self.pid] if isolated else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for victim in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self.jobs_fd, self.status_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _spawn(
    key: tuple[str, ...],
    compiled: Compiled,
    host: LineReader,
    out_fd: int,
    job: dict[str, Any],
    foreign: list[int],
) -> _Child:
    """A child for ``key``'s jobs; ``foreign``: descriptors it must not keep a copy of."""
    # Jobs go down a socket: a job's line to its candidate travels with it.
    jobs_r, jobs_w = (s.detach() for s in socket.socketpair())
    status_r, status_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # A copy of a line here would keep the candidate's end open after the judge hangs up.
        for fd in (jobs_w, status_r, *foreign, *host.fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        host.fds.clear()
        _serve(compiled, host, out_fd, jobs_r, status_w, job)
    os.close(jobs_r)
    os.close(status_w)
    return _Child(pid, key, jobs_w, status_r)


def _serve(
    compiled: Compiled,
    host: LineReader,
    out_fd: int,
    jobs_fd: int,
    status_fd: int,
    first: dict[str, Any],
) -> None:
    """The child: runs the jobs the worker hands it, one at a time; never returns."""
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _limit(resource.RLIMIT_AS, int(first.get("memory_mb", 1024)) * MIB)
        _limit(resource.RLIMIT_FSIZE, int(first.get("file_size_mb", 64)) * MIB)
        _limit(resource.RLIMIT_CORE, 0)
        jobs = LineReader(jobs_fd, fds=True)

        def write(message: dict[str, Any]) -> None:
            write_all(out_fd, (json.dumps(message) + "\n").encode())

        while (line := jobs.wait_line()) is not None:
            job = json.loads(line)
            channel: Relayed | Direct = Relayed(host, write)
            if job.get("line") and (fd := jobs.take_fd()) is not None:
                channel = Direct(fd, int(job.get("reply_bytes", 1 << 26)))
            # CPU seconds are counted over the child's life: this job's share on top.
            used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            _limit(resource.RLIMIT_CPU, int(used + float(job["timeout_s"]) + GRACE_S) + 1)
            folder = str(job["folder"])
            try:
                os.makedirs(folder, 0o700)
                os.chdir(folder)
                events = run_judge_job(job, channel, folder, compiled)
            except BaseException as exc:  # the judge itself failed: no verdict, with why
                events = [{"t": "error", "message": f"the judge failed: {describe(exc)}"[:300]}]
            if isinstance(channel, Direct):
                channel.close()  # the candidate's process ends when it sees this
            write({"result": events})
            write_all(status_fd, b"done\n")
    except BaseException:
        os._exit(1)
    os._exit(0)


def _done(child: _Child, deadline: float) -> bool:
    """True once the child says its job is done; False at the deadline or its death."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        ready, _, _ = select.select([child.status_fd], [], [], remaining)
        if ready:
            try:
                data = os.read(child.status_fd, 64)
            except OSError:
                return False
            return data.endswith(b"done\n")


def _next_job(host: LineReader) -> dict[str, Any] | None:
    while (line := host.wait_line()) is not None:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # the tail of an answer to a child killed mid-read
        job = message.get("judge") if type(message) is dict else None
        if type(job) is dict:
            return job
        # else: an answer that crossed the last job's final reply
    return None


def _kill_strays(child: _Child | None, isolated: bool) -> None:
    """Kill what the job started, keeping the worker and the child that serves the task."""
    if child is None:
        kill_job(0, isolated)
        return
    if isolated:
        for victim in other_processes():
            if victim != child.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, signal.SIGKILL)
    reap()


def worker(settings: dict[str, Any]) -> None:
    host, out, write_fd, isolated, workdir, folders = start(settings, "judge")  # type: ignore[arg-type]
    scratch, keep = list(settings.get("scratch", [])), list(settings.get("keep", []))
    pytest_loaded = False
    cache: dict[tuple[str, ...], Compiled] = {}
    child: _Child | None = None
    out.write(b'{"ready": true}\n')
    while (job := _next_job(host)) is not None:
        if job.get("kind") == "pytest" and not pytest_loaded:
            with contextlib.suppress(ImportError):
                import pytest  # noqa: F401  (once here, so each child gets it warm)
            pytest_loaded = True
        key = Compiled.key(job)
        if key not in cache:
            if len(cache) >= CACHE_TASKS:
                cache.pop(next(iter(cache)))
            cache[key] = Compiled(job)
        if child is not None and child.key != key:
            child.retire(isolated)
            child = None
        line = host.take_fd() if job.get("line") else None
        if child is None:
            child = _spawn(key, cache[key], host, write_fd, job, [] if line is None else [line])
        folder = os.path.join(workdir, f"job-{time.monotonic_ns()}")
        deadline = time.monotonic() + float(job.get("timeout_s", 10.0)) + GRACE_S
        message = (json.dumps({**job, "folder": folder}) + "\n").encode()
        if line is None:  # relayed by codealign's process
            write_all(child.jobs_fd, message)
        else:  # the child's alone from here: the candidate sees its end close with it
            send_with_fds(child.jobs_fd, message, [line])
            os.close(line)
        done = _done(child, deadline)
        timed_out = not done and time.monotonic() >= deadline
        # Exit code: 0 done, 1 the child died under the job, None killed at the deadline.
        exit_code = 0 if done else None if timed_out else 1
        if not done or job.get("kind") == "pytest":  # pytest keeps state: one job a child
            child.close(isolated)
            child = None
        _kill_strays(child, isolated)
        remove_tree(folder)
        for stray in host.fds:  # never one job's line in another's
            with contextlib.suppress(OSError):
                os.close(stray)
        host.fds.clear()
        clean = (wipe(workdir, scratch, keep) if scratch else True) and folders.restore()
        final = {"final": True, "timed_out": timed_out, "exit_code": exit_code}
        out.write((json.dumps({**final, "retire": not clean}) + "\n").encode())
        if not clean:
            return
    if child is not None:
        child.close(isolated)


__all__ = ["GRACE_S", "worker"]
