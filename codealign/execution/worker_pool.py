"""A pool of long-lived sandbox workers, each speaking the runner's line protocol.

Starting an interpreter per sample costs tens of milliseconds; forking a job from a warm
worker costs about one. Each worker runs ``sandbox/runner.py`` inside its sandbox; the
pool hands it one job at a time and replaces a worker that dies or stops answering. The
job it held is answered with ``None`` (the caller turns that into a sandbox_error), never
lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from codealign.errors import InputError

STARTUP_TIMEOUT_S = 60.0
#: Time a worker gets beyond the job's own limit to kill the job and answer.
REPLY_GRACE_S = 10.0


class SandboxStartError(InputError):
    """A sandbox worker could not be started (missing tool, refused namespaces...)."""


class _Worker:
    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin = self.proc.stdin
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self._buf = b""
        ready = self._read_line(STARTUP_TIMEOUT_S)
        if ready is None:
            why = self.stderr_text() or f"exit status {self.proc.poll()}"
            self.kill()
            raise SandboxStartError(f"sandbox worker failed to start: {why}")

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode("utf-8", "replace").strip()

    def _read_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sel.select(remaining):
                return None
            try:
                chunk = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def request(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        try:
            self._stdin.write(json.dumps(job).encode() + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        line = self._read_line(timeout)
        if line is None:
            return None
        try:
            reply = json.loads(line)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) else None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for closeable in (self._stdin, self.proc.stdout, self._stderr, self._sel):
            with contextlib.suppress(Exception):
                closeable.close()  # type: ignore[union-attr]


class WorkerPool:
    """``size`` workers started from ``argv``; ``request`` is safe to call from many threads."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        size: int,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._argv, self._env = list(argv), env
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self._on_close = on_close
        self._closed = False
        # Start one worker eagerly so that a broken sandbox fails fast, with its message.
        self._idle.put(self._spawn())
        for _ in range(size - 1):
            self._idle.put(None)  # started lazily, on first use
        self.replaced = 0

    def _spawn(self) -> _Worker:
        worker = _Worker(self._argv, self._env)
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            self.replaced += 1

    def request(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Run one job; ``None`` when its worker died or hung (the worker is replaced)."""
        worker = self._idle.get()
        try:
            if worker is None:
                worker = self._spawn()
            reply = worker.request(job, timeout + REPLY_GRACE_S)
            if reply is None or reply.get("retire"):
                self._retire(worker)
                worker = None
            return reply
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.kill()
        if self._on_close is not None:
            self._on_close()
