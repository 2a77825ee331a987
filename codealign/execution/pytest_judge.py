"""pytest suites judged outside the candidate's process.

The suite (its tests, conftest, plugins, data files) runs under pytest in a judge process
on the host that the candidate cannot reach; ``import solution`` there gives a proxy
module. Every attribute of it, and everything the candidate returns that is not plain
data, is a handle: an object that stays in the candidate's process, whose attributes,
calls, length, items and iteration are forwarded as plain data. A handle never decides a
comparison here: it equals only itself. The candidate never sees the test files; files a
fixture hands it travel with the call (everything under pytest's ``tmp_path`` root, and
any file under the suite's folder that a call's arguments name), and what it writes
under ``tmp_path`` comes back after the call.

A test passes only on this process's own report of its call phase, and the result
lists every test pytest collected, so skipping, deselecting or exiting early cannot pass.

Two halves: ``run_pytest_outside`` (in the executor's thread: starts the judge process,
relays its calls to the sandbox worker) and ``main`` (the judge process).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import selectors
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from typing import IO, Any

from codealign.execution.conversation import CandidateError, Conversation, Ended, NotPlainData
from codealign.execution.worker_pool import Session
from codealign.sandbox.candidate import short
from codealign.tasks import PytestSuite, Task

#: Where the judge's folders live; the same path is made inside the sandbox for tmp_path.
JUDGE_ROOT = "/tmp"
#: Time the judge process gets to import pytest before the candidate's clock starts.
STARTUP_S = 60.0
#: Bytes of files that travel with one call, either way.
SYNC_BYTES = 16 << 20
_TEST_NAMES = ("conftest.py",)


def _is_test_source(path: pathlib.Path) -> bool:
    name = path.name
    return (
        name in _TEST_NAMES
        or name.endswith(".py")
        or name.endswith(".pyc")
        or "__pycache__" in path.parts
    )


# --- the executor's side ---------------------------------------------------------------------


def run_pytest_outside(
    session: Session, task: Task, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one pytest job judged outside; returns a reply in the shape ``judge`` reads."""
    suite = task.tests
    assert isinstance(suite, PytestSuite)
    root = pathlib.Path(JUDGE_ROOT) / f"codealign-judge-{secrets.token_hex(8)}"
    tests, basetemp = root / "suite", root / "tmp"
    try:
        for relpath, content in suite.files:
            path = tests / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        with _judge_process(tests, basetemp, suite.module) as judge:
            return _relay(session, payload, judge, timeout)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _judge_process(tests: pathlib.Path, basetemp: pathlib.Path, module: str) -> Iterator[_Judge]:
    argv = [sys.executable, "-m", "codealign.execution.pytest_judge"]
    argv += [str(tests), str(basetemp), module]
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tests,
        env=env,
        start_new_session=True,
    )
    judge = _Judge(proc)
    try:
        yield judge
    finally:
        judge.close()


class _Judge:
    """The judge process's line protocol, read with deadlines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self._in: IO[bytes] = proc.stdin
        self._fd = proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._fd, selectors.EVENT_READ)
        self._buf = b""

    def read(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._sel.select(remaining):
                return None
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    return None
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        message = json.loads(line)
        return message if isinstance(message, dict) else None

    def write(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._in.write(json.dumps(message).encode() + b"\n")
            self._in.flush()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, 9)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=10)
        self._sel.close()
        for stream in (self._in, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]


def _relay(
    session: Session, payload: dict[str, Any], judge: _Judge, timeout: float
) -> dict[str, Any]:
    # The candidate's clock starts once pytest is imported here, not before.
    hello = judge.read(time.monotonic() + STARTUP_S)
    if hello is None or not hello.get("hello"):
        return {"final": True, "events": [], "worker_error": "the pytest judge did not start"}
    conversation = Conversation(session, time.monotonic() + timeout)
    serve = {**payload, "mode": "outside", "handles": True}
    if not conversation.start(serve):
        judge.write({"gone": True})
        return conversation.finish([])
    judge.write({"go": True})
    result: dict[str, Any] | None = None
    # The judge's own run is bounded by the candidate's clock plus time to report.
    while (message := judge.read(conversation.deadline + 5.0)) is not None:
        if "result" in message:
            result = message["result"]
            break
        call = message.get("call")
        try:
            answer = conversation.exchange(call if isinstance(call, dict) else {})
        except Ended:
            answer = {"gone": True}
        judge.write({"answer": answer})
    events = _result_events(result)
    return conversation.finish(events)


def _result_events(result: Any) -> list[dict[str, Any]]:
    """The judge's per-test verdicts as events; no result (the judge hung) runs nothing."""
    if not isinstance(result, dict) or not isinstance(result.get("tests"), list):
        return [{"t": "error", "message": "the pytest judge did not finish the suite"}]
    events: list[dict[str, Any]] = []
    for row in result["tests"]:
        name, status, message, duration = row
        events.append(
            {"t": "test", "name": name, "status": status, "message": message, "duration": duration}
        )
    if result.get("collected", 0) == 0 and not events:
        return [{"t": "task_error", "message": "pytest collected no tests"}]
    events.append({"t": "done"})
    return events


# --- the judge process ----------------------------------------------------------------------


class _Remote:
    """The judge process's line to the sandbox (through the executor's thread)."""

    def __init__(self, out: IO[bytes], inp: IO[bytes], roots: list[pathlib.Path]) -> None:
        self._out, self._in = out, inp
        self.tests, self.basetemp = roots
        self.gone = False
        self._shipped: dict[str, tuple[int, int]] = {}

    def request(self, op: str, target: list[Any], args: tuple[Any, ...] = (), **kw: Any) -> Any:
        if self.gone:
            raise CandidateError("the candidate's process has ended")
        from codealign.sandbox.plain_data import Unserializable, encode

        try:
            call = {
                "op": op,
                "target": target,
                "args": encode(args, _handle_id),
                "kwargs": encode(kw, _handle_id),
                "files": self._files_for(args, kw),
                "sync": [str(self.basetemp)],
            }
        except Unserializable as exc:
            raise NotPlainData(f"the test passes a value the sandbox cannot take: {exc}") from None
        self._out.write(json.dumps({"call": call}).encode() + b"\n")
        self._out.flush()
        line = self._in.readline()
        answer = json.loads(line).get("answer") if line else {"gone": True}
        if not isinstance(answer, dict) or answer.get("gone"):
            self.gone = True
            raise CandidateError("the candidate's process has ended")
        self._files_back(answer.get("files"))
        return Conversation.value_of(answer, args, self.handle)

    def handle(self, number: int) -> Handle:
        return Handle(self, number)

    def _files_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[list[str]]:
        """Files to hand over: new or changed ones under tmp_path's root, and the files
        under the suite's folder that an argument names (never test sources)."""
        paths = [p for p in self.basetemp.rglob("*") if p.is_file() and not p.is_symlink()]
        for value in _walk((args, kwargs)):
            if isinstance(value, str | os.PathLike):
                with contextlib.suppress(OSError, ValueError):
                    named = pathlib.Path(os.fspath(value)).resolve()
                    if named.is_relative_to(self.tests.resolve()):
                        found = named.rglob("*") if named.is_dir() else [named]
                        paths += [p for p in found if p.is_file() and not _is_test_source(p)]
        files, budget = [], SYNC_BYTES
        for path in paths:
            st = path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
            if self._shipped.get(str(path)) == stamp or st.st_size > budget:
                continue
            data = path.read_bytes()
            budget -= len(data)
            self._shipped[str(path)] = stamp
            files.append([str(path), data.hex()])
        return files

    def _files_back(self, files: Any) -> None:
        """Write back what the candidate wrote under tmp_path's root, checking each path."""
        if not isinstance(files, list):
            return
        budget = SYNC_BYTES
        root = self.basetemp.resolve()
        for item in files:
            if not (
                isinstance(item, list) and len(item) == 2 and all(type(x) is str for x in item)
            ):
                continue
            path = pathlib.Path(os.path.normpath(item[0]))
            try:
                data = bytes.fromhex(item[1])
            except ValueError:
                continue
            budget -= len(data)
            if budget < 0 or not path.is_relative_to(root) or path == root:
                continue
            _write_below(root, path.relative_to(root), data)
            st = path.stat()
            self._shipped[str(path)] = (st.st_size, st.st_mtime_ns)


def _write_below(root: pathlib.Path, relative: pathlib.Path, data: bytes) -> None:
    """Write ``root/relative`` without following any link the candidate may have named."""
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | nofollow)
    try:
        for part in relative.parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
            except OSError:
                return
            os.close(fd)
            fd = nxt
        try:
            out = os.open(
                relative.parts[-1],
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nofollow,
                0o600,
                dir_fd=fd,
            )
        except OSError:
            return
        with os.fdopen(out, "wb") as fh:
            fh.write(data)
    finally:
        os.close(fd)


def _walk(value: Any, depth: int = 0) -> Iterator[Any]:
    yield value
    if depth < 20 and isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _walk(item, depth + 1)
    elif depth < 20 and isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(key, depth + 1)
            yield from _walk(item, depth + 1)


def _handle_id(value: Any) -> int:
    from codealign.sandbox.plain_data import Unserializable

    if isinstance(value, Handle):
        number: int = object.__getattribute__(value, "_number")
        return number
    raise Unserializable(f"values of type {type(value).__qualname__} cannot reach the sandbox")


class Handle:
    """An object of the candidate's, held by number; it equals only itself."""

    __slots__ = ("_number", "_remote")

    def __init__(self, remote: _Remote, number: int) -> None:
        object.__setattr__(self, "_remote", remote)
        object.__setattr__(self, "_number", number)

    def _do(self, op: str, *args: Any, **kwargs: Any) -> Any:
        remote: _Remote = object.__getattribute__(self, "_remote")
        number = object.__getattribute__(self, "_number")
        return remote.request(op, ["h", number], args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._do("getattr", name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._do("setattr", name, value)

    def __delattr__(self, name: str) -> None:
        self._do("delattr", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._do("call", *args, **kwargs)

    def __len__(self) -> int:
        return int(self._do("len"))

    def __bool__(self) -> bool:
        return self._do("bool") is True

    def __iter__(self) -> Iterator[Any]:
        it = self._do("iter")
        if isinstance(it, Handle):
            while True:
                try:
                    yield it._do("next")
                except StopIteration:
                    return
        else:
            yield from it

    def __getitem__(self, key: Any) -> Any:
        return self._do("getitem", key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._do("setitem", key, value)

    def __delitem__(self, key: Any) -> None:
        self._do("delitem", key)

    def __contains__(self, item: Any) -> bool:
        return self._do("contains", item) is True

    def __str__(self) -> str:
        return str(self._do("str"))

    def __repr__(self) -> str:
        text = self._do("repr")
        return short(text) if isinstance(text, str) else "<candidate object>"

    def __eq__(self, other: object) -> bool:
        return other is self

    def __ne__(self, other: object) -> bool:
        return other is not self

    def __hash__(self) -> int:
        return object.__hash__(self)


class _ProxyModule(types.ModuleType):
    """``import solution`` in the judge: each global is fetched from the sandbox."""

    def __init__(self, name: str, remote: _Remote) -> None:
        super().__init__(name)
        self.__dict__["_remote"] = remote

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self.__dict__["_remote"].request("value", ["g", name])
        except NameError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


class _Recorder:
    """Per-test evidence from pytest's own hooks, in this process."""

    def __init__(self) -> None:
        self.collected = 0
        self.verdicts: dict[str, tuple[str, str, float]] = {}

    def pytest_collection_finish(self, session: Any) -> None:
        self.collected = len(session.items)
        for item in session.items:
            self.verdicts[item.nodeid] = ("not_run", "not run", 0.0)

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            name = report.nodeid or "<collection>"
            self.verdicts[name] = (
                "error",
                f"collection failed: {report.longreprtext}"[-1500:],
                0.0,
            )

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid
        previous = self.verdicts.get(name, ("not_run", "", 0.0))
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                verdict = ("skipped", f"xfail: {report.wasxfail}")
            elif report.passed:
                verdict = ("passed", "")
            elif report.skipped:
                verdict = ("skipped", "skipped")
            else:
                verdict = ("failed", short(report.longreprtext))
            if previous[0] != "error":
                self.verdicts[name] = (*verdict, report.duration)
        elif report.failed:  # setup or teardown errors fail the test whatever its call did
            message = short(f"{report.when}: {report.longreprtext}")
            self.verdicts[name] = ("error", message, report.duration)
        elif report.skipped and previous[0] == "not_run":
            self.verdicts[name] = ("skipped", "skipped", report.duration)


def main(argv: list[str]) -> None:
    """The judge process: ``TESTS BASETEMP MODULE``; speaks JSON lines on stdin/stdout."""
    tests, basetemp, module = pathlib.Path(argv[0]), pathlib.Path(argv[1]), argv[2]
    # The protocol keeps the real stdout; what tests print goes nowhere.
    out = os.fdopen(os.dup(1), "wb")
    inp = os.fdopen(os.dup(0), "rb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    import pytest

    out.write(b'{"hello": true}\n')
    out.flush()
    go = json.loads(inp.readline() or b"{}")
    recorder = _Recorder()
    if go.get("go"):
        remote = _Remote(out, inp, [tests, basetemp])
        sys.modules[module] = _ProxyModule(module, remote)
        sys.path.insert(0, str(tests))
        options = ["-q", "-p", "no:cacheprovider", "-p", "no:faulthandler", "-p", "no:pastebin"]
        options += ["--rootdir", str(tests), "--basetemp", str(basetemp), "-o", "addopts="]
        pytest.main([*options, str(tests)], plugins=[recorder])
    rows = [[name, *verdict] for name, verdict in recorder.verdicts.items()]
    result = {"collected": recorder.collected, "tests": rows}
    out.write(json.dumps({"result": result}).encode() + b"\n")
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
