"""The in-sandbox worker: runs jobs sent over stdin, one fresh child process per job.

Standard library only: this runs inside the sandbox, started as ``python3 -I -c <bundle>``
(see ``codealign.sandbox.worker_source``). The host writes one JSON job per line to its
stdin and reads one JSON message per line from its stdout.

Trust layout. The worker frames everything the host hears: ready, the final reply,
durations, io outputs and exit codes. It is PID 1 of the sandbox's PID namespace and not
dumpable (``hygiene.harden_worker``), so a job can neither signal it nor open its
descriptors or memory. Each job runs in a forked child that becomes the candidate's
process once the program runs; the child keeps only its own pipes and may only answer
the calls the worker sends it, one JSON line per call. Every answer is size-capped and
checked against the call it answers; anything else is a protocol violation that fails
that job (never the worker, never the run). Before each job the worker checks that the
last one left nothing behind (``hygiene.Leftovers``); what it cannot clear retires it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import selectors
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TypedDict

from codealign.sandbox import seccomp
from codealign.sandbox.candidate import CandidateJob, answer_calls, describe, short
from codealign.sandbox.hygiene import (
    Leftovers,
    allow_dump,
    harden_worker,
    kill_job,
    reap,
)

TAIL_BYTES = 2048
#: How often the worker checks whether the job's process has exited.
POLL_S = 0.02
#: How long output is still read after the job's process exited (leftover processes may
#: hold its pipes open forever).
EXIT_GRACE_S = 0.05
#: Tests one inside-judged job may report.
MAX_TESTS = 10_000
NAME_CHARS = 300
TEST_STATUSES = frozenset({"passed", "failed", "error", "timeout", "skipped", "not_run"})


class JobLimits(TypedDict):
    timeout_s: float
    memory_mb: int
    file_size_mb: int
    max_output_bytes: int
    max_processes: int


class Job(CandidateJob, total=False):
    """One job as the host sends it (``mode``: "outside" serves calls, "inside" runs tests)."""

    inputs: list[str]
    limits: JobLimits


class WorkerSettings(TypedDict, total=False):
    workdir: str
    scratch: list[str]
    keep: list[str]
    #: The sandbox has its own PID, IPC and network namespaces: the worker must be PID 1,
    #: and processes, IPC objects and sockets are checked between jobs.
    isolated: bool
    #: A unix socket to reach the host by, instead of stdin/stdout (if it connects).
    channel: str


class ProtocolViolation(Exception):
    """The candidate's process said something that answers no call."""


class NotStarted(Exception):
    """The job could not be started (no process could be made): run it elsewhere."""


# --- what the worker accepts from the candidate's process ---------------------------------

#: Reply kinds per call: a reply of another kind, or to no call, is a violation.
LOAD_REPLIES = frozenset({"ok", "syntax_error", "error"})
RUN_REPLIES = frozenset({"test", "done", "task_error", "error"})
SERVE_REPLIES = frozenset({"ret", "raise", "bad_value"})


def checked_reply(line: bytes, call_id: int | None, allowed: frozenset[str]) -> dict[str, Any]:
    """The reply in ``line``, rebuilt from its known fields; raises ProtocolViolation."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolViolation("an unreadable message") from None
    if type(raw) is not dict:
        raise ProtocolViolation("a message that is not an object")
    if call_id is None or raw.get("id") != call_id or type(raw.get("id")) is not int:
        raise ProtocolViolation("a message that answers no call")
    kind = raw.get("t")
    if kind not in allowed:
        raise ProtocolViolation(f"a message of kind {str(kind)[:40]!r} where none was asked")
    reply: dict[str, Any] = {"id": call_id, "t": kind}

    def text(key: str, limit: int) -> str:
        value = raw.get(key, "")
        if type(value) is not str:
            raise ProtocolViolation(f"a {key} that is not text")
        return value[:limit]

    if kind in ("syntax_error", "error", "task_error", "raise", "bad_value", "test"):
        reply["message"] = text("message", NAME_CHARS)
    if kind == "raise":
        reply["type"] = text("type", 100)
    if kind == "test":
        reply["name"] = text("name", NAME_CHARS)
        if raw.get("status") not in TEST_STATUSES:
            raise ProtocolViolation("a test with an unknown status")
        reply["status"] = raw["status"]
    if kind == "ret":  # plain data, decoded (and bounded) by the judge
        reply["value"] = raw.get("value")
        if "args" in raw:
            reply["args"] = raw["args"]
        if "files" in raw:
            reply["files"] = raw["files"]
    return reply


# --- the job's process --------------------------------------------------------------------


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
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    set_limits(limits)


def _writer(fd: int) -> Callable[[dict[str, Any]], None]:
    def write(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(fd, data) :]

    return write


def _candidate_main(job: Job, fds: tuple[int, int, int, int]) -> None:
    reply_w, out_w, err_w, calls_r = fds
    null = os.open(os.devnull, os.O_RDONLY)
    reply_fd, calls_fd = os.dup(reply_w), os.dup(calls_r)
    _enter_child(null, out_w, err_w, (reply_fd, calls_fd), job["limits"])
    with contextlib.suppress(BaseException):
        answer_calls(job, calls_fd, _writer(reply_fd))
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)


def _script_main(job: Job, fds: tuple[int, int, int, int]) -> None:
    """An io case: compile (a syntax error is reported before any candidate code runs),
    drop the reply pipe, then run the program as ``__main__``."""
    reply_w, out_w, err_w, stdin_r = fds
    _enter_child(stdin_r, out_w, err_w, (reply_w,), job["limits"])
    try:
        program = compile(job.get("program", ""), "<candidate>", "exec")
    except (SyntaxError, ValueError) as exc:
        _writer(reply_w)({"id": 0, "t": "syntax_error", "message": describe(exc)})
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


# --- supervising one process ---------------------------------------------------------------


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


class LineReader:
    """Lines from a non-blocking descriptor, each at most ``limit`` bytes."""

    def __init__(self, fd: int, limit: int = 1 << 30) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def fill(self) -> None:
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(self.fd, 1 << 20)
            self.eof = not chunk
            self.buf += chunk

    def pop(self) -> bytes | None:
        line, sep, rest = self.buf.partition(b"\n")
        if not sep:
            if len(self.buf) > self.limit:
                raise ProtocolViolation(f"a message over {self.limit} bytes")
            return None
        if len(line) > self.limit:
            raise ProtocolViolation(f"a message over {self.limit} bytes")
        self.buf = rest
        return line

    def wait_line(self) -> bytes | None:
        """Block until a whole line (None at end of input)."""
        while True:
            line = self.pop()
            if line is not None or self.eof:
                return line
            sel = selectors.DefaultSelector()
            sel.register(self.fd, selectors.EVENT_READ)
            sel.select()
            sel.close()
            self.fill()


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
        main: Callable[[Job, tuple[int, int, int, int]], None],
        job: Job,
        stdout: Capture,
        stderr: Capture,
        reply_limit: int,
        stdin: bytes | None = None,
    ) -> None:
        reply_r, reply_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # The fourth pipe carries calls to the candidate, or an io case's stdin.
        in_r, in_w = os.pipe()
        self.pid = _fork()
        if self.pid == 0:
            try:
                for fd in (reply_r, out_r, err_r, in_w):
                    os.close(fd)
                main(job, (reply_w, out_w, err_w, in_r))
            finally:
                os._exit(70)
        for fd in (reply_w, out_w, err_w, in_r):
            os.close(fd)
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

    def poll(self, timeout: float, extra: list[int]) -> list[int]:
        """Move data for up to ``timeout`` seconds; returns which of ``extra`` are ready."""
        if self.exit_code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.exit_code, self._exited_at = (
                    os.waitstatus_to_exitcode(status),
                    time.monotonic(),
                )
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
        while self.exit_code is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.exit_code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                return False
            else:
                time.sleep(0.0005)
        return True

    def close(self, own_pid_namespace: bool) -> None:
        kill_job(self.pid, own_pid_namespace)
        if self.exit_code is None:
            with contextlib.suppress(ChildProcessError):
                _, status = os.waitpid(self.pid, 0)
                self.exit_code = os.waitstatus_to_exitcode(status)
        self._sel.close()
        for fd in (self.replies.fd, *self._fds, self._in_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


# --- running one job -----------------------------------------------------------------------


def _send(out: Out, message: dict[str, Any]) -> None:
    out.write((json.dumps(message) + "\n").encode())


class _Calls:
    """The one call the candidate's process owes an answer to."""

    def __init__(self) -> None:
        self.id: int | None = None
        self.allowed: frozenset[str] = frozenset()

    def ask(
        self, proc: Supervised, call_id: int, op: str, allowed: frozenset[str], **rest: Any
    ) -> None:
        proc.send({**rest, "id": call_id, "op": op})
        self.id, self.allowed = call_id, allowed

    def answer(self, line: bytes) -> dict[str, Any]:
        return checked_reply(line, self.id, self.allowed)


def run_calls(job: Job, isolated: bool, host: LineReader, out: Out) -> dict[str, Any]:
    """A check, asserts or pytest job: load the program, then serve calls or run the suite."""
    limits = job["limits"]
    serve = job.get("mode") == "outside"
    start = time.monotonic()
    deadline = start + limits["timeout_s"]
    stdout, stderr = Capture(limits["max_output_bytes"]), Capture(limits["max_output_bytes"])
    proc = Supervised(_candidate_main, job, stdout, stderr, 16 * limits["max_output_bytes"])
    calls = _Calls()
    calls.ask(proc, 0, "load", LOAD_REPLIES)
    events: list[dict[str, Any]] = []
    last = time.monotonic()
    ended = not serve  # serve: until the judge says "end"
    timed_out = violation = None
    tests = 0
    try:
        while not stdout.exceeded and not stderr.exceeded:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if proc.finished:
                break
            woke = proc.poll(min(deadline - now, POLL_S), [host.fd] if serve and not ended else [])
            if woke:
                host.fill()
                if host.eof:
                    ended = True
            while serve and not ended and (line := host.pop()) is not None:
                message = json.loads(line)
                call = message.get("call") if type(message) is dict else None
                if type(call) is dict and type(call.get("id")) is int and calls.id is None:
                    rest = {k: v for k, v in call.items() if k not in ("id", "op")}
                    calls.ask(proc, call["id"], str(call.get("op")), SERVE_REPLIES, **rest)
                else:  # "end", or nonsense from the host: the candidate's input closes
                    ended = True
            if ended and calls.id is None:
                proc.close_input()
            while (line := proc.replies.pop()) is not None:
                reply = calls.answer(line)
                kind = reply["t"]
                now = time.monotonic()
                if kind == "ok" and serve:
                    calls.id = None
                    _send(out, {"event": {"t": "ready"}})
                elif kind == "ok":
                    calls.ask(proc, 1, "run", RUN_REPLIES)
                elif kind == "test":
                    tests += 1
                    if tests > MAX_TESTS:
                        raise ProtocolViolation(f"more than {MAX_TESTS} tests")
                    events.append({**reply, "duration": round(now - last, 6)})
                elif serve:
                    calls.id = None
                    _send(out, {"event": reply})
                else:
                    calls.id = None
                    events.append(reply)
                last = now
                if kind in ("syntax_error", "error", "task_error", "done"):
                    calls.id = None
                    ended = True
                    proc.close_input()
    except ProtocolViolation as exc:
        violation = str(exc)
    duration = time.monotonic() - start
    if not timed_out and violation is None and not (stdout.exceeded or stderr.exceeded):
        timed_out = not proc.wait_exit(deadline)
    proc.close(isolated)
    if serve:  # calls the judge sent after the end are answered by this final reply
        with contextlib.suppress(ProtocolViolation):
            while not ended and (line := host.pop()) is not None:
                ended = "call" not in json.loads(line)
    return {
        "final": True,
        "events": events,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "timed_out": bool(timed_out),
        "output_exceeded": stdout.exceeded or stderr.exceeded,
        "exit_code": proc.exit_code,
        "duration": duration,
        "violation": violation,
    }


def run_io(job: Job, isolated: bool) -> dict[str, Any]:
    """An io job: each input in a process of its own; the worker captures what it prints."""
    limits = job["limits"]
    limit = limits["max_output_bytes"]
    start = time.monotonic()
    deadline = start + limits["timeout_s"]
    stderr = Capture(limit)
    events: list[dict[str, Any]] = []
    timed_out = False
    exit_code: int | None = None
    for index, stdin_text in enumerate(job.get("inputs", [])):
        stdout = Capture(limit, keep=limit)
        proc = Supervised(_script_main, job, stdout, stderr, 4096, stdin_text.encode())
        syntax = None
        while not proc.finished and not stdout.exceeded and not stderr.exceeded:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            proc.poll(min(deadline - now, POLL_S), [])
        with contextlib.suppress(ProtocolViolation):
            if (line := proc.replies.pop()) is not None:
                syntax = checked_reply(line, 0, frozenset({"syntax_error"}))
        if not timed_out and not stdout.exceeded and not stderr.exceeded:
            timed_out = not proc.wait_exit(deadline)
        proc.close(isolated)
        exit_code = proc.exit_code
        if syntax is not None:
            events = [syntax]
            break
        if timed_out or stderr.exceeded:
            break
        events.append(
            {
                "t": "io",
                "index": index,
                "exit": exit_code,
                "overflow": stdout.exceeded,
                "stdout": stdout.text(),
            }
        )
    else:
        events.append({"t": "done"})
    return {
        "final": True,
        "events": events,
        "stdout": "",
        "stderr": stderr.text(),
        "timed_out": timed_out,
        "output_exceeded": stderr.exceeded,
        "exit_code": exit_code,
        "duration": time.monotonic() - start,
        "violation": None,
    }


def run_job(job: Job, workdir: str, isolated: bool, host: LineReader, out: Out) -> dict[str, Any]:
    """Run one job in a fresh folder of its own."""
    jobdir = os.path.join(workdir, f"job-{time.monotonic_ns()}")
    os.mkdir(jobdir, 0o700)
    os.chdir(jobdir)
    try:
        if job.get("kind") == "io":
            return run_io(job, isolated)
        return run_calls(job, isolated, host, out)
    finally:
        os.chdir("/")


# --- the worker ----------------------------------------------------------------------------


def _failed(exc: BaseException) -> dict[str, Any]:
    return {
        "final": True,
        "events": [],
        "not_started": isinstance(exc, NotStarted),
        "worker_error": describe(exc),
    }


def _channel(settings: WorkerSettings) -> tuple[int, int]:
    """The host's line: a unix socket where one was mounted for us, else stdin/stdout.
    Either way it moves to private descriptors and 0/1/2 become harmless."""
    path = settings.get("channel")
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
        else:
            fd = sock.detach()
            return fd, os.dup(fd)
    return os.dup(0), os.dup(1)


class Out:
    """Writes whole messages to the host, whether or not the descriptor blocks (a socket's
    read and write ends share one non-blocking flag)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                select.select([], [self.fd], [])


def worker(settings: WorkerSettings) -> None:
    read_fd, write_fd = _channel(settings)
    host = LineReader(read_fd)
    proto_out = Out(write_fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    isolated = bool(settings.get("isolated"))
    if isolated:
        if os.getpid() != 1:
            sys.exit("the sandbox worker must be PID 1 of its own PID namespace")
        harden_worker()
    # A folder of this worker's own: workers may share the folder they were given.
    workdir = os.path.join(settings["workdir"], f"worker-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    leftovers = Leftovers(workdir, settings.get("scratch", []), settings.get("keep", []), isolated)
    pytest_loaded = False
    proto_out.write(b'{"ready": true}\n')
    while (line := host.wait_line()) is not None:
        job: Job = json.loads(line)
        if "limits" not in job:
            continue  # an "end" or a call that crossed the last job's final reply
        if job.get("kind") == "pytest" and not pytest_loaded:
            # Import pytest once here so each forked job gets it warm.
            with contextlib.suppress(ImportError):
                import pytest  # noqa: F401
            pytest_loaded = True
        found = leftovers.find()
        if found:
            leftovers.clear()
            found = leftovers.find()
        if found:  # never run a job in a sandbox another job has touched
            reply = _failed(NotStarted("left by an earlier job: " + ", ".join(found)))
            reply["retire"] = True
            proto_out.write((json.dumps(reply) + "\n").encode())
            return
        try:
            reply = run_job(job, workdir, isolated, host, proto_out)
            leftovers.clear()
            clean = not leftovers.find()
        except BaseException as exc:  # never leave the host waiting: answer, then retire
            reply = _failed(exc)
            clean = False
        reply["retire"] = not clean
        proto_out.write((json.dumps(reply) + "\n").encode())
        if not clean:  # the pool starts a fresh sandbox instead of reusing a dirty one
            return


def main(argv: list[str]) -> None:
    """``worker SETTINGS_JSON``: scratch folders are emptied after every job, except the
    read-only mounts listed in keep."""
    if len(argv) == 2 and argv[0] == "worker":
        worker(json.loads(argv[1]))
    else:
        sys.exit("usage: runner worker SETTINGS_JSON")


__all__ = [
    "Job",
    "JobLimits",
    "LineReader",
    "NotStarted",
    "ProtocolViolation",
    "WorkerSettings",
    "checked_reply",
    "main",
    "run_job",
    "set_limits",
    "short",
    "worker",
]
