"""A job's process: forked from the worker, confined, then watched until it ends.

Standard library only (this runs inside the sandbox). The child side (``candidate_main``,
``script_main``) takes its own session, keeps only its own pipes, drops into seccomp and
its resource limits, and then serves the worker's calls or runs an io case's program.
The worker side (``Supervised``) forks it and moves its data: calls or stdin in, replies
and size-capped output (``Capture``) out, until it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import selectors
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from codealign.sandbox import seccomp
from codealign.sandbox.candidate import answer_calls, describe, writer
from codealign.sandbox.hygiene import allow_dump, kill_job, libc, reap
from codealign.sandbox.protocol import Job, JobLimits, LineReader

TAIL_BYTES = 2048
#: How long output is still read after the job's process exited (leftover processes may
#: hold its pipes open forever).
EXIT_GRACE_S = 0.05


class NotStarted(Exception):
    """The job could not be started (no process could be made): run it elsewhere."""


# --- in the job's process -----------------------------------------------------------------


def set_limits(limits: JobLimits) -> None:
    mb = 1024 * 1024
    cpu = int(limits["timeout_s"]) + 2
    pairs = [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0)]
    if limits.get("memory_mb"):
        pairs.append((resource.RLIMIT_AS, limits["memory_mb"] * mb))
    if limits.get("file_size_mb"):
        pairs.append((resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb))
    if limits.get("max_processes"):
        pairs.append((resource.RLIMIT_NPROC, limits["max_processes"]))
    for which, value in pairs:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(which, (value, value))


def _enter_child(
    stdin: int, out_w: int, err_w: int, own: tuple[int, ...], limits: JobLimits
) -> None:
    """In a freshly forked job process: its own session, descriptors and limits only."""
    os.setsid()
    os.dup2(stdin, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    keep = sorted({0, 1, 2, *own})
    # Nothing of the worker's stays reachable: every other descriptor is closed.
    for low, high in zip(keep, [*keep[1:], 65536], strict=True):
        os.closerange(low + 1, high)
    allow_dump()
    seccomp.install()  # best effort: the worker checks its own state between jobs anyway
    if not _STDIO:  # made once in the worker (``prepare``); they write to fds 0, 1 and 2
        _STDIO.extend(_stdio())
    sys.stdin, sys.stdout, sys.stderr = _STDIO
    set_limits(limits)


_STDIO: list[Any] = []


def _stdio() -> list[Any]:
    return [
        open(0, encoding="utf-8", closefd=False),
        open(1, "w", encoding="utf-8", closefd=False),
        open(2, "w", encoding="utf-8", closefd=False),
    ]


def prepare() -> None:
    """What every job's process needs, made once in the worker before any fork (each
    costs a job's process a fraction of a millisecond to make): the C library's
    ``prctl``, the seccomp filter, and UTF-8 text streams over descriptors 0, 1 and 2
    (nothing is ever written to them here, so no buffered byte is inherited)."""
    libc().prctl  # noqa: B018  (resolved once: allow_dump's call in each job)
    seccomp.prepare()
    if not _STDIO:
        _STDIO.extend(_stdio())


def candidate_main(job: Job, fds: tuple[int, int, int, int, int]) -> None:
    """The candidate's process: loads the program on the worker's call, then answers the
    judge's calls, relayed by the worker or (``line``) straight from the judge's sandbox."""
    reply_w, out_w, err_w, calls_r, line = fds
    null = os.open(os.devnull, os.O_RDONLY)
    reply_fd, calls_fd = os.dup(reply_w), os.dup(calls_r)
    line_fd = os.dup(line) if line >= 0 else None
    own = (reply_fd, calls_fd) if line_fd is None else (reply_fd, calls_fd, line_fd)
    _enter_child(null, out_w, err_w, own, job["limits"])
    with contextlib.suppress(BaseException):
        answer_calls(job, calls_fd, writer(reply_fd), line_fd)
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def script_main(job: Job, fds: tuple[int, int, int, int, int]) -> None:
    """An io case: compile (a syntax error is reported before any candidate code runs),
    drop the reply pipe, then run the program as ``__main__``."""
    reply_w, out_w, err_w, stdin_r, _ = fds
    _enter_child(stdin_r, out_w, err_w, (reply_w,), job["limits"])
    try:
        program = compile(job.get("program", ""), "<candidate>", "exec")
    except (SyntaxError, ValueError) as exc:
        writer(reply_w)({"id": 0, "t": "syntax_error", "message": describe(exc)})
        os._exit(1)
    os.close(reply_w)
    code = 0
    try:
        exec(program, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
        code = 1
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    os._exit(code)


# --- in the worker: supervising one process -----------------------------------------------


class Capture:
    """Output of one pipe: the first ``keep`` bytes or the last TAIL_BYTES, and the total."""

    def __init__(self, limit: int, keep: int = 0) -> None:
        self.limit, self.keep = limit, keep
        self.total = 0
        self.buf = b""

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self.keep:
            self.buf += chunk[: max(0, self.keep - len(self.buf))]
        else:
            self.buf = (self.buf + chunk)[-TAIL_BYTES:]

    @property
    def exceeded(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        return self.buf.decode("utf-8", "replace")


def _fork() -> int:
    """fork(), retried while the sandbox's process limit is still full of the last job."""
    for _ in range(100):
        try:
            return os.fork()
        except BlockingIOError:
            reap()
            time.sleep(0.01)
    raise NotStarted("cannot fork: the sandbox's process limit is exhausted")


class Supervised:
    """One forked process of a job: its exit, its output, and its call/reply pipes."""

    def __init__(
        self,
        main: Callable[[Job, tuple[int, int, int, int, int]], None],
        job: Job,
        stdout: Capture,
        stderr: Capture,
        reply_limit: int,
        stdin: bytes | None = None,
        line: int | None = None,
    ) -> None:
        reply_r, reply_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # The fourth pipe carries calls to the candidate, or an io case's stdin.
        in_r, in_w = os.pipe()
        try:
            self.pid = _fork()
        except BaseException:
            if line is not None:
                os.close(line)
            raise
        if self.pid == 0:
            try:
                for fd in (reply_r, out_r, err_r, in_w):
                    os.close(fd)
                main(job, (reply_w, out_w, err_w, in_r, -1 if line is None else line))
            finally:
                os._exit(70)
        for fd in (reply_w, out_w, err_w, in_r):
            os.close(fd)
        if line is not None:  # the child's alone: a copy here would keep it open
            os.close(line)
        self.stdout, self.stderr = stdout, stderr
        self.replies = LineReader(reply_r, reply_limit)
        self._in_w = in_w
        os.set_blocking(in_w, False)
        self._outbox = stdin or b""
        self._close_in = stdin is not None
        self._sel = selectors.DefaultSelector()
        for fd in (reply_r, out_r, err_r):
            os.set_blocking(fd, False)
            self._sel.register(fd, selectors.EVENT_READ)
        self._fds = {out_r: stdout, err_r: stderr}
        self.exit_code: int | None = None
        self._exited_at = 0.0
        # The process's exit wakes the selector (no polling for it) where the kernel has pidfds.
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = -1
        else:
            self._sel.register(self._pidfd, selectors.EVENT_READ)

    def send(self, message: dict[str, Any]) -> None:
        self._outbox += (json.dumps(message) + "\n").encode()

    def close_input(self) -> None:
        self._close_in = True

    def _flush(self) -> None:
        if self._outbox and self._in_w >= 0:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                self._outbox = self._outbox[os.write(self._in_w, self._outbox) :]
        if self._close_in and not self._outbox and self._in_w >= 0:
            os.close(self._in_w)
            self._in_w = -1

    @property
    def finished(self) -> bool:
        """Exited and its pipes drained (or held open by leftovers past the grace)."""
        if self.exit_code is not None and time.monotonic() - self._exited_at > EXIT_GRACE_S:
            return True
        return not self._sel.get_map()

    def _check_exit(self) -> bool:
        """Collect the process's exit status if it has exited; True once it has."""
        if self.exit_code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if not done:
                return False
            self.exit_code, self._exited_at = os.waitstatus_to_exitcode(status), time.monotonic()
        if self._pidfd >= 0:
            self._sel.unregister(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        return True

    def poll(self, timeout: float, extra: list[int]) -> list[int]:
        """Move data for up to ``timeout`` seconds; returns which of ``extra`` are ready."""
        if self._pidfd < 0:
            self._check_exit()
        self._flush()
        for fd in extra:
            self._sel.register(fd, selectors.EVENT_READ)
        try:
            ready = self._sel.select(max(0.0, timeout)) if self._sel.get_map() else []
        finally:
            for fd in extra:
                self._sel.unregister(fd)
        woke = []
        for key, _ in ready:
            fd = key.fd
            if fd in extra:
                woke.append(fd)
            elif fd == self._pidfd:
                self._check_exit()
            elif fd == self.replies.fd:
                self.replies.fill()
                if self.replies.eof:
                    self._sel.unregister(fd)
            else:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    self._fds[fd].add(chunk)
                else:
                    self._sel.unregister(fd)
        if not ready and not self._sel.get_map():
            time.sleep(min(timeout, 0.0005))
        return woke

    def wait_exit(self, deadline: float) -> bool:
        """Wait for the process to exit; False at the deadline."""
        while not self._check_exit():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._pidfd >= 0:
                select.select([self._pidfd], [], [], remaining)
            else:
                time.sleep(min(remaining, 0.0005))
        return True

    def close(self, own_pid_namespace: bool) -> None:
        kill_job(self.pid, own_pid_namespace)
        if self.exit_code is None:
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.pid, 0)
                self.exit_code = os.waitstatus_to_exitcode(status)
        self._sel.close()
        for fd in (self.replies.fd, *self._fds, self._in_w, self._pidfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


__all__ = [
    "Capture",
    "NotStarted",
    "Supervised",
    "candidate_main",
    "prepare",
    "script_main",
    "set_limits",
]
