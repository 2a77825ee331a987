"""A pool of long-lived sandbox workers, each speaking the runner's line protocol.

Starting an interpreter per sample costs tens of milliseconds; forking a job from a warm
worker costs about one. Each worker runs ``codealign.sandbox.runner`` inside its sandbox; the
pool hands it one job at a time and replaces a worker that dies or stops answering. The
job it held is answered with ``None`` (the caller turns that into a sandbox_error), never
lost.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import selectors
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from codealign.errors import InputError

STARTUP_TIMEOUT_S = 60.0
#: Time a worker gets beyond the job's own limit to kill the job and answer.
REPLY_GRACE_S = 10.0
#: The longest message a worker may send; a longer one is a lost worker (the job fails).
MESSAGE_BYTES = 64 << 20


class SandboxStartError(InputError):
    """A sandbox worker could not be started (missing tool, refused namespaces...)."""


@dataclass
class Launch:
    """How to start one worker: its command line, and optionally a unix socket it may
    connect to instead of speaking over its stdin/stdout (Docker's attach stream costs
    three process hops per message; a socket in a bind-mounted folder costs none)."""

    argv: list[str]
    listener: socket.socket | None = None
    #: Removes the listener's folder; called once the worker connected or failed to.
    cleanup: Callable[[], None] | None = None
    #: Give the worker one end of a unix socket pair as stdin and stdout (not pipes), so
    #: that a message may carry a descriptor to it (``send(..., fds=...)``).
    socket_stdio: bool = True


class _Worker:
    def __init__(self, launch: Launch, env: dict[str, str]) -> None:
        self.argv = launch.argv
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        ours, theirs = socket.socketpair() if launch.socket_stdio else (None, None)
        try:
            self.proc = subprocess.Popen(
                launch.argv,
                stdin=subprocess.PIPE if theirs is None else theirs.fileno(),
                stdout=subprocess.PIPE if theirs is None else theirs.fileno(),
                stderr=self._stderr,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if theirs is not None:
                theirs.close()
        self._stdin = self.proc.stdin
        self._sock: socket.socket | None = ours
        if ours is not None:
            self._fd = ours.fileno()
        else:
            assert self.proc.stdout is not None
            self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self._buf = b""
        try:
            if launch.listener is not None:
                self._accept(launch.listener)
        finally:
            if launch.listener is not None:
                launch.listener.close()
            if launch.cleanup is not None:
                launch.cleanup()
        ready = self._read_line(STARTUP_TIMEOUT_S)
        if ready is None:
            why = self.stderr_text() or f"exit status {self.proc.poll()}"
            self.kill()
            raise SandboxStartError(f"sandbox worker failed to start: {why}")

    def _accept(self, listener: socket.socket) -> None:
        """Take the worker's connection, if it makes one before it speaks on stdout; only
        the first connection is ever accepted (the listener closes right after)."""
        self._sel.register(listener, selectors.EVENT_READ)
        ready = self._sel.select(STARTUP_TIMEOUT_S)
        self._sel.unregister(listener)
        if not any(key.fileobj is listener for key, _ in ready):
            return  # it answered on stdout (no socket reachable): keep the stdio channel
        conn, _ = listener.accept()
        self._sel.unregister(self._fd)
        self._sock = conn
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)
        self._sel.register(self._fd, selectors.EVENT_READ)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode("utf-8", "replace").strip()

    def _read_line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            if len(self._buf) > MESSAGE_BYTES:
                return None
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
        return line if len(line) <= MESSAGE_BYTES else None

    @property
    def passes_fds(self) -> bool:
        """Whether a message to this worker may carry descriptors."""
        return self._sock is not None

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> bool:
        data = json.dumps(message).encode() + b"\n"
        try:
            if self._sock is not None:
                self._send_socket(data, fds)
            elif fds:
                return False
            else:
                assert self._stdin is not None
                self._stdin.write(data)
                self._stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def _send_socket(self, data: bytes, fds: Sequence[int]) -> None:
        assert self._sock is not None
        view = memoryview(data)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        while view:
            try:
                sent = self._sock.sendmsg([view], ancillary)
            except BlockingIOError:
                select.select([], [self._sock], [], 1.0)
                continue
            view, ancillary = view[sent:], []

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The worker's next message, or None when it died, hung or spoke nonsense."""
        line = self._read_line(timeout)
        if line is None:
            return None
        try:
            reply = json.loads(line)
        except (ValueError, RecursionError):  # nonsense from a broken worker
            return None
        return reply if isinstance(reply, dict) else None

    def request(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send a job and wait for its final reply."""
        return self.final(timeout) if self.send(job) else None

    def final(self, timeout: float) -> dict[str, Any] | None:
        """The job's final reply (what comes before it is dropped); None if none came."""
        deadline = time.monotonic() + timeout
        while (reply := self.receive(max(0.0, deadline - time.monotonic()))) is not None:
            if reply.get("final"):
                return reply
        return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        for closeable in (self._stdin, self.proc.stdout, self._stderr, self._sel, self._sock):
            with contextlib.suppress(Exception):
                closeable.close()  # type: ignore[union-attr]


class Session:
    """One job's conversation with a worker; any failure makes the worker unusable."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self.reusable = True

    @property
    def passes_fds(self) -> bool:
        """Whether ``send`` may hand the worker descriptors."""
        return self._worker.passes_fds

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> bool:
        self.reusable = self.reusable and self._worker.send(message, fds)
        return self.reusable

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message within ``timeout`` (+ grace for the worker to clean up)."""
        reply = self._worker.receive(timeout + REPLY_GRACE_S) if self.reusable else None
        if reply is None or reply.get("retire"):
            self.reusable = False
        return reply

    def request(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        reply = self._worker.request(job, timeout + REPLY_GRACE_S)
        if reply is None or reply.get("retire"):
            self.reusable = False
        return reply

    def final(self, timeout: float) -> dict[str, Any] | None:
        """The final reply to the job already sent (within ``timeout`` + grace)."""
        reply = self._worker.final(timeout + REPLY_GRACE_S) if self.reusable else None
        if reply is None or reply.get("retire"):
            self.reusable = False
        return reply


class WorkerPool:
    """``size`` workers started from ``argv``; ``request`` is safe to call from many threads."""

    def __init__(
        self,
        argv: Sequence[str] | Callable[[], Sequence[str] | Launch],
        env: dict[str, str],
        size: int,
        on_close: Callable[[], None] | None = None,
        on_retire: Callable[[Sequence[str]], None] | None = None,
        *,
        wait: bool = True,
    ) -> None:
        # A callable makes a fresh command line per worker (a container name, say).
        self._argv = argv if callable(argv) else (lambda: argv)
        self._env = env
        self._on_retire = on_retire
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="codealign-spawn")
        # Idle workers (None: not started yet), each with the affinity of its last job.
        self._idle: list[tuple[_Worker | None, str | None]] = []
        self._freed = threading.Condition()
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self._on_close = on_close
        self._closed = False
        # One worker starts at once so that a broken sandbox fails fast, with its message
        # (``wait=False``: in the background, so two pools start side by side; ``started``).
        self._first: Future[_Worker] | None = self._spawner.submit(self._launch)
        self._idle += [(None, None)] * (size - 1)  # started lazily, on first use
        self.replaced = 0
        if wait:
            self.started()

    def _launch(self) -> _Worker:
        launch = self._argv()
        if not isinstance(launch, Launch):
            launch = Launch(list(launch))
        return _Worker(launch, self._env)

    def started(self) -> None:
        """Wait for the first worker; if it cannot start, close the pool and raise why."""
        with self._lock:
            first, self._first = self._first, None
        if first is None:
            return
        try:
            worker = first.result()
        except BaseException:
            self.close()
            raise
        with self._lock:
            self._all.append(worker)
        with self._freed:  # first in line: a started worker goes before unstarted slots
            self._idle.insert(0, (worker, None))
            self._freed.notify()

    def _spawn(self) -> _Worker:
        # From the pool's own thread: bubblewrap's --die-with-parent kills a sandbox when the
        # *thread* that started it exits, and the threads that run jobs come and go.
        worker = self._spawner.submit(self._launch).result()
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        if self._on_retire is not None:
            self._on_retire(worker.argv)
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            self.replaced += 1

    def _take(self, affinity: str | None) -> _Worker | None:
        with self._freed:
            while not self._idle:
                self._freed.wait()
            pick = next((i for i, (_, a) in enumerate(self._idle) if a == affinity), 0)
            return self._idle.pop(pick if affinity is not None else 0)[0]

    def _give_back(self, worker: _Worker | None, affinity: str | None) -> None:
        with self._freed:
            self._idle.append((worker, affinity))
            self._freed.notify()

    @contextlib.contextmanager
    def session(self, affinity: str | None = None) -> Iterator[Session]:
        """A worker of one's own for one job; it is replaced if the job leaves it unusable.
        ``affinity``: prefer the idle worker whose last job had the same (a judge keeps
        one task's code warm in a child between that task's jobs)."""
        self.started()
        worker = self._take(affinity)
        session = None
        try:
            if worker is not None and worker.proc.poll() is not None:
                self._retire(worker)  # it died while idle (killed from outside): a fresh one
                worker = None
            if worker is None:
                worker = self._spawn()
            session = Session(worker)
            yield session
        except BaseException:
            if session is not None:  # mid-conversation: its protocol state is unknown
                session.reusable = False
            raise
        finally:
            if worker is not None and (session is None or not session.reusable):
                self._retire(worker)
                worker = None
            self._give_back(worker, affinity if worker is not None else None)

    def request(self, job: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Run one job; ``None`` when its worker died or hung (the worker is replaced)."""
        with self.session() as session:
            return session.request(job, timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            first, self._first = self._first, None
        if first is not None:
            with contextlib.suppress(BaseException):
                self._all.append(first.result())
        with self._lock:
            workers, self._all = self._all, []
        for worker in workers:
            worker.kill()
            if self._on_retire is not None:
                self._on_retire(worker.argv)
        self._spawner.shutdown(wait=False)
        if self._on_close is not None:
            self._on_close()


def start_together(*pools: WorkerPool) -> None:
    """Wait for each pool's first worker, started side by side (``wait=False``); if one
    cannot start, every pool is closed and the first failure is raised."""
    try:
        for pool in pools:
            pool.started()
    except BaseException:
        for pool in pools:
            pool.close()
        raise
