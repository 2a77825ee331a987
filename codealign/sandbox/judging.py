"""The judge's side of a job, run in a sandbox of its own: the task's tests run here.

Standard library only (pytest when a suite needs it): this runs in a forked child of the
judge worker (``judge_worker``), never in codealign's process. The task's own code (the
prompt or setup, check and asserts code, a pytest suite with its conftest) runs here with
the candidate's functions bound to proxies. A proxy's call travels as plain data, one JSON
line, over a socket straight into the candidate's process (``Direct``: codealign's process
made the pair for this job and gave one end to each sandbox), or relayed by codealign's
process where a worker cannot take a descriptor (``Relayed``). Values are decoded here
with bounded plain-data decoding, so what comes back is data of exact built-in types (a
candidate's path stays a ``PurePosixPath``: data, never a file to read), objects of the
classes the task defines rebuilt from the task's own class.

Files cross only by declared intent: everything under the job's shared folder (where
``tempfile`` and pytest's ``tmp_path`` put what the test makes for the candidate) goes to
the candidate's sandbox at the same path before each call, and what the candidate wrote
there comes back after it. Nothing is ever looked up from a string or path a value names.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import os
import pathlib
import tempfile
import time
import types
from collections.abc import Iterator
from typing import Any

from codealign.sandbox.candidate import RecordAsserts, assert_recorder, describe, short
from codealign.sandbox.judge_line import Direct, Relayed
from codealign.sandbox.plain_data import Malformed, TaskTypes, Unserializable, decode, encode

#: Bytes of files that travel with one call, either way.
SYNC_BYTES = 16 << 20
#: The module name the task's own code runs under (its classes carry it).
TASK_MODULE = "__task__"


class Ended(BaseException):
    """The candidate's run ended (timeout, crash, exit) while a call was pending."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one, or answered nonsense."""


class NotPlainData(Exception):
    """The test hands the candidate a value that cannot cross into the sandbox."""


class TaskError(Exception):
    """The task's own code failed before any test ran."""


def rebuild_exception(name: str, message: str) -> Exception:
    """The candidate's exception as a judge-side exception of the same built-in type."""
    cls = getattr(builtins, name, None)
    text = message.partition(": ")[2] if message.startswith(name) else message
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:
            pass
    return CandidateError(message)


def copy_back(args: tuple[Any, ...], after: Any) -> None:
    """Mirror in-place changes the candidate made to list, dict and set arguments."""
    if type(after) is not tuple or len(after) != len(args):
        return
    for mine, theirs in zip(args, after, strict=True):
        if type(mine) is list and type(theirs) is list:
            mine[:] = theirs
        elif (type(mine) is dict and type(theirs) is dict) or (
            type(mine) is set and type(theirs) is set
        ):
            mine.clear()
            mine.update(theirs)


class Link:
    """Calls into the candidate's process over the job's line (``judge_line``)."""

    def __init__(
        self,
        channel: Relayed | Direct,
        share: str,
        *,
        handles: bool,
    ) -> None:
        self.channel = channel
        self.share = pathlib.Path(share)
        self.handles = handles
        self.types: TaskTypes | None = None
        #: The suite's folder (pytest): its data files cross when the test names them.
        self.suite: pathlib.Path | None = None
        self.gone = False
        self._shipped: dict[str, tuple[int, int]] = {}

    def request(self, op: str, target: list[Any], args: tuple[Any, ...] = (), **kwargs: Any) -> Any:
        """Apply ``op`` to ``target`` in the candidate's process; the result as plain data.

        Raises Ended once the candidate's run is over."""
        if self.gone:
            raise Ended
        maker = _handle_id if self.handles else None
        namer = self.types.name if self.types is not None else None
        try:
            call = {
                "op": op,
                "target": target,
                "args": encode(args, maker, task_type=namer),
                "kwargs": encode(kwargs, maker, task_type=namer),
                "files": self._files_out(args, kwargs),
                "sync": [str(self.share)],
            }
        except Unserializable as exc:
            raise NotPlainData(f"the test passes a value the sandbox cannot take: {exc}") from None
        answer = self.channel.exchange(call)
        if answer is None:
            self.gone = True
            raise Ended
        self._files_in(answer.get("files"))
        return self.value_of(answer, args)

    def value_of(self, answer: dict[str, Any], args: tuple[Any, ...]) -> Any:
        kind = answer.get("t")
        if kind == "raise":
            raise rebuild_exception(str(answer.get("type")), str(answer.get("message", "")))
        if kind != "ret":
            message = short(str(answer.get("message", "")))
            raise CandidateError(f"returned something that is not plain data: {message}")
        reader = self.handle if self.handles else None
        maker = self.types.make if self.types is not None else None
        try:
            value = decode(answer.get("value"), reader, task_type=maker, path=pathlib.PurePosixPath)
            after = (
                decode(answer["args"], reader, task_type=maker, path=pathlib.PurePosixPath)
                if "args" in answer
                else None
            )
        except Malformed as exc:
            raise CandidateError(f"returned malformed or oversized data: {exc}") from None
        copy_back(args, after)
        return value

    def handle(self, number: int) -> Handle:
        return Handle(self, number)

    def _files_out(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[list[str]]:
        """New or changed files under the shared folder, and the suite's data files that
        the test itself names with an absolute ``pathlib.Path`` (never a string, never a
        path the candidate returned: that one is a ``PurePosixPath`` here)."""
        # Most calls share nothing: one listing says so without walking.
        paths = sorted(self.share.rglob("*")) if _listed(self.share) else []
        for named in self._suite_paths((args, kwargs)):
            found = sorted(named.rglob("*")) if named.is_dir() else [named]
            paths += [p for p in found if not _is_test_source(p)]
        files, budget = [], SYNC_BYTES
        for path in paths:
            with contextlib.suppress(OSError):
                if path.is_symlink() or not path.is_file():
                    continue
                st = path.stat()
                stamp = (st.st_size, st.st_mtime_ns)
                if self._shipped.get(str(path)) == stamp or st.st_size > budget:
                    continue
                data = path.read_bytes()
                budget -= len(data)
                self._shipped[str(path)] = stamp
                files.append([str(path), data.hex()])
        return files

    def _suite_paths(self, value: Any, depth: int = 0) -> Iterator[pathlib.Path]:
        if self.suite is None or depth > 20:
            return
        if type(value) is pathlib.PosixPath and value.is_absolute():
            with contextlib.suppress(OSError, ValueError):
                named = value.resolve()
                if named.is_relative_to(self.suite) and named != self.suite:
                    yield named
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                yield from self._suite_paths(item, depth + 1)
        elif isinstance(value, dict):
            for item in value.values():
                yield from self._suite_paths(item, depth + 1)

    def _files_in(self, files: Any) -> None:
        """Write back what the candidate wrote under the shared folder, checking each path."""
        if not isinstance(files, list) or not files:
            return
        budget = SYNC_BYTES
        root = self.share.resolve()
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
            if write_below(root, path.relative_to(root), data):
                st = path.stat()
                self._shipped[str(path)] = (st.st_size, st.st_mtime_ns)


def _listed(folder: pathlib.Path) -> bool:
    """Whether ``folder`` holds anything at all."""
    try:
        with os.scandir(folder) as it:
            return next(it, None) is not None
    except OSError:
        return False


def _is_test_source(path: pathlib.Path) -> bool:
    name = path.name
    return name.endswith((".py", ".pyc")) or "__pycache__" in path.parts


def write_below(root: pathlib.Path, relative: pathlib.Path, data: bytes) -> bool:
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
                return False
            os.close(fd)
            fd = nxt
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nofollow
            out = os.open(relative.parts[-1], flags, 0o600, dir_fd=fd)
        except OSError:
            return False
        with os.fdopen(out, "wb") as fh:
            fh.write(data)
        return True
    finally:
        os.close(fd)


def _handle_id(value: Any) -> int:
    if isinstance(value, Handle):
        number: int = object.__getattribute__(value, "_number")
        return number
    raise Unserializable(f"values of type {type(value).__qualname__} cannot reach the sandbox")


class Handle:
    """An object of the candidate's, held by number; it equals only itself."""

    __slots__ = ("_link", "_number")

    def __init__(self, link: Link, number: int) -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_number", number)

    def _do(self, op: str, *args: Any, **kwargs: Any) -> Any:
        link: Link = object.__getattribute__(self, "_link")
        number = object.__getattribute__(self, "_number")
        try:
            return link.request(op, ["h", number], args, **kwargs)
        except Ended:
            raise CandidateError("the candidate's process has ended") from None

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


# --- check and asserts suites ----------------------------------------------------------------


class _Proxy:
    def __init__(self, link: Link, name: str) -> None:
        self._link = link
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.request("call", ["g", self.__name__], args, **kwargs)


class Compiled:
    """A task's prelude and test code, compiled once per worker (compiling runs nothing);
    each job's child runs them. ``None`` members: compile in the child (and fail there)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.prelude: Any = None
        self.test: Any = None
        with contextlib.suppress(Exception, RecursionError, MemoryError):
            self.prelude = compile(str(job.get("prelude", "")), "<prelude>", "exec")
            if job.get("kind") == "check":
                source = str(job.get("test", ""))
                tree = RecordAsserts(source).visit(ast.parse(source))
                self.test = compile(ast.fix_missing_locations(tree), "<test>", "exec")

    @staticmethod
    def key(job: dict[str, Any]) -> tuple[str, ...]:
        """What makes one task's code one task's: a child serves only jobs of one key."""
        asserts = job.get("asserts")
        return (
            str(job.get("kind")),
            str(job.get("prelude")),
            str(job.get("test")),
            *(map(str, asserts) if isinstance(asserts, list) else ()),
        )


def _task_namespace(job: dict[str, Any], link: Link, compiled: Compiled) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": TASK_MODULE}
    try:
        code = compiled.prelude or compile(job.get("prelude", ""), "<prelude>", "exec")
        exec(code, namespace)  # the task's own code
    except BaseException as exc:
        raise TaskError(f"the task's own code failed: {describe(exc)}") from None
    link.types = TaskTypes(namespace, list(job.get("task_types", [])))
    return namespace


def judge_functions(
    job: dict[str, Any], link: Link, events: list[dict[str, Any]], compiled: Compiled
) -> bool:
    """Run a check or asserts suite; False when the candidate's run ended under it."""
    namespace = _task_namespace(job, link, compiled)
    proxies = {name: _Proxy(link, name) for name in job.get("proxied", [])}
    namespace.update(proxies)
    last = time.perf_counter()

    def test(name: str, status: str, message: str = "") -> None:
        nonlocal last
        now = time.perf_counter()
        event = {"t": "test", "name": name, "status": status, "message": message}
        events.append({**event, "duration": round(now - last, 6)})
        last = now

    try:
        if job.get("kind") == "check":
            code = compiled.test
            if code is None:
                source = str(job.get("test", ""))
                tree = RecordAsserts(source).visit(ast.parse(source))
                code = compile(ast.fix_missing_locations(tree), "<test>", "exec")
            namespace["__codealign_record__"] = assert_recorder(test, (Ended,))
            exec(code, namespace)
            try:
                namespace["check"](proxies[job["entry_point"]])
            except Ended:
                raise
            except (Exception, SystemExit) as exc:  # outside any assert: the check failed
                test("<check>", "error", describe(exc))
        else:
            for index, source in enumerate(job.get("asserts", [])):
                name = f"test_list[{index}]"
                try:
                    exec(compile(source, f"<test {index}>", "exec"), namespace)
                except AssertionError:
                    test(name, "failed", short(source))
                except Ended:
                    raise
                except (Exception, SystemExit) as exc:
                    test(name, "error", f"{short(source)} -> {describe(exc)}")
                else:
                    test(name, "passed")
    except Ended:
        return False
    return True


# --- pytest suites ---------------------------------------------------------------------------


class _ProxyModule(types.ModuleType):
    """``import solution`` in the judge: each global is fetched from the sandbox."""

    def __init__(self, name: str, link: Link) -> None:
        super().__init__(name)
        self.__dict__["_link"] = link

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self.__dict__["_link"].request("value", ["g", name])
        except Ended:
            raise CandidateError("the candidate's process has ended") from None
        except NameError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


class PytestRecorder:
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
            message = f"collection failed: {report.longreprtext}"[-1500:]
            self.verdicts[name] = ("error", message, 0.0)

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


def judge_pytest(
    job: dict[str, Any], link: Link, folder: str, events: list[dict[str, Any]]
) -> bool:
    """Run a pytest suite from ``folder`` with ``import MODULE`` giving the candidate."""
    import pytest

    tests = pathlib.Path(folder) / "suite"
    for relpath, content in job.get("files", []):
        path = tests / os.path.normpath(str(relpath))
        if not path.is_relative_to(tests):
            raise TaskError(f"a suite file outside the suite's folder: {relpath!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(content), encoding="utf-8")
    module = str(job.get("module", "solution"))
    link.suite = tests.resolve()
    import sys

    sys.modules[module] = _ProxyModule(module, link)
    sys.path.insert(0, str(tests))
    os.chdir(tests)
    recorder = PytestRecorder()
    options = ["-q", "-p", "no:cacheprovider", "-p", "no:faulthandler", "-p", "no:pastebin"]
    options += ["--rootdir", str(tests), "--basetemp", str(link.share / "pytest"), "-o", "addopts="]
    pytest.main([*options, str(tests)], plugins=[recorder])
    for name, (status, message, duration) in recorder.verdicts.items():
        event = {"t": "test", "name": name, "status": status, "message": message}
        events.append({**event, "duration": duration})
    if recorder.collected == 0 and not events:
        raise TaskError("pytest collected no tests")
    return True


def run_judge_job(
    job: dict[str, Any],
    channel: Relayed | Direct,
    folder: str,
    compiled: Compiled | None = None,
) -> list[dict[str, Any]]:
    """One job's events: the tests' verdicts, then ``done``; or why the suite could not run."""
    share = os.path.join(folder, "share")
    os.makedirs(share, 0o700)
    tempfile.tempdir = share  # what the check code makes for the candidate is shared
    os.environ["TMPDIR"] = share
    link = Link(channel, share, handles=job.get("kind") == "pytest")
    events: list[dict[str, Any]] = []
    try:
        if job.get("kind") == "pytest":
            finished = judge_pytest(job, link, folder, events)
        else:
            finished = judge_functions(job, link, events, compiled or Compiled(job))
    except TaskError as exc:
        return [{"t": "task_error", "message": short(str(exc))}]
    if channel.violation is not None:  # never a pass: the run broke the protocol
        message = f"the program broke the sandbox protocol: {channel.violation}"
        return [*events, {"t": "error", "message": short(message)}]
    if finished:
        events.append({"t": "done"})
    return events


__all__ = [
    "CandidateError",
    "Compiled",
    "Ended",
    "Handle",
    "Link",
    "NotPlainData",
    "PytestRecorder",
    "TaskError",
    "TaskTypes",
    "rebuild_exception",
    "run_judge_job",
    "write_below",
]
