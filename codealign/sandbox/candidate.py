"""What runs in a job's own process, the candidate's: it loads the program and answers calls.

Standard library only (this runs inside the sandbox). The process starts as a fork of the
worker and becomes the candidate's the moment the program runs, so nothing it says is
trusted: its only channel is a reply pipe the worker reads, one JSON line per reply,
each answering the call the worker sent (``{"id": n, "op": ...}``). The worker checks
every reply against the call it answers and frames everything else itself.

Ops: ``load`` compiles and runs the program (a syntax error is reported before any of the
candidate's code runs, so that reply can be believed); the serve ops (``call``,
``getattr``, ``len``, ...) apply one operation to a global of the program or to a handle
and return plain data (or, where the judge asked for them, handles to objects that stay
here); ``run`` runs a suite inside this process, for tasks that chose the inside mode.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import operator
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypedDict

from codealign.sandbox.plain_data import TaskTypes, Unserializable, decode, encode

MESSAGE_CHARS = 300


class TaskError(Exception):
    """The task's own test code is broken (not the candidate's fault)."""


class CandidateError(Exception):
    """The candidate broke a contract the tests rely on."""


def short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def describe(exc: BaseException) -> str:
    detail = str(exc)
    return short(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)


#: The built-in exception classes by identity, taken before any candidate code runs (a
#: class may call itself ``ZeroDivisionError``, or the program may rebind the name).
_BUILTIN_EXCEPTIONS = {
    id(value): name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
_type_of = type
_base_of = type.__dict__["__base__"].__get__


def builtin_name(exc: BaseException) -> str:
    """The name of the nearest genuine built-in class the exception derives from."""
    cls: type | None = _type_of(exc)
    while cls is not None:
        name = _BUILTIN_EXCEPTIONS.get(id(cls))
        if name is not None:
            return name
        cls = _base_of(cls)
    return "Exception"


class CandidateJob(TypedDict, total=False):
    """The part of a job the candidate's process reads."""

    kind: str
    program: str
    setup: str
    entry_point: str
    test: str
    asserts: list[str]
    files: list[list[str]]
    module: str
    mode: str
    handles: bool
    task_types: list[str]


Reply = Callable[[dict[str, Any]], None]


# --- check kind: every assert reached inside check() is its own test ----------------------


class RecordAsserts(ast.NodeTransformer):
    """Rewrites ``assert cond, msg`` into a recorded evaluation that does not stop the check."""

    def __init__(self, source: str) -> None:
        # Lines split once (``ast.get_source_segment`` splits the whole source per call,
        # which is quadratic in a suite of many asserts), ends kept, as the parser counts.
        parts = re.split(r"(\r\n|\r|\n)", source)
        self.lines = ["".join(parts[i : i + 2]) for i in range(0, len(parts), 2)]
        self.scope = ["<module>"]

    def segment(self, node: ast.AST) -> str | None:
        """The source text of ``node`` (as ``ast.get_source_segment`` gives it)."""
        try:
            first: int = node.lineno - 1  # type: ignore[attr-defined]
            last: int = node.end_lineno - 1  # type: ignore[attr-defined]
            start: int = node.col_offset  # type: ignore[attr-defined]
            end: int = node.end_col_offset  # type: ignore[attr-defined]
            if first == last:
                return self.lines[first].encode()[start:end].decode()
            head = self.lines[first].encode()[start:].decode()
            tail = self.lines[last].encode()[:end].decode()
        except (AttributeError, IndexError, TypeError, UnicodeDecodeError):
            return None
        return head + "".join(self.lines[first + 1 : last]) + tail

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        name = f"{self.scope[-1]}:L{node.lineno}"
        text = self.segment(node) or f"assert at line {node.lineno}"

        def record(value: ast.expr, exc: ast.expr) -> ast.stmt:
            call = ast.Call(
                ast.Name("__codealign_record__", ast.Load()),
                [ast.Constant(name), ast.Constant(short(text)), value, exc],
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


def compile_recorded(source: str) -> Any:
    """``source`` compiled with every assert recorded instead of raised."""
    tree = RecordAsserts(source).visit(ast.parse(source, "<test>"))
    return compile(ast.fix_missing_locations(tree), "<test>", "exec")


Report = Callable[[str, str, str], None]


def assert_recorder(
    report: Report, passthrough: tuple[type[BaseException], ...] = ()
) -> Callable[[str, str, Any, BaseException | None], None]:
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
        ok = False
        if exc is None:
            try:
                ok = bool(value)
            except Exception as bool_exc:
                exc = bool_exc
        if exc is not None:
            report(name, "error", f"{text} -> {describe(exc)}")
        else:
            report(name, "passed" if ok else "failed", "" if ok else text)

    return record


# --- inside mode: the suite runs in this process (tasks that chose it) --------------------


def _run_check(job: CandidateJob, report: Report, namespace: dict[str, Any]) -> None:
    namespace["__codealign_record__"] = assert_recorder(report)
    exec(compile_recorded(job.get("test", "")), namespace)
    check = namespace.get("check")
    if not callable(check):
        raise TaskError("the test code does not define check(candidate)")
    entry = job.get("entry_point", "")
    if entry not in namespace:
        raise CandidateError(f"the program does not define {entry!r}")
    check(namespace[entry])


def _run_asserts(job: CandidateJob, report: Report, namespace: dict[str, Any]) -> None:
    for index, test in enumerate(job.get("asserts", [])):
        name = f"test_list[{index}]"
        try:
            code = compile(test, f"<test {index}>", "exec")
        except SyntaxError as exc:
            report(name, "error", f"test does not compile: {describe(exc)}")
            continue
        try:
            exec(code, namespace)
        except AssertionError:
            report(name, "failed", short(test))
        except BaseException as exc:
            report(name, "error", f"{short(test)} -> {describe(exc)}")
        else:
            report(name, "passed", "")


class _PytestRecorder:
    def __init__(self) -> None:
        self.verdicts: dict[str, tuple[str, str]] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            name = report.nodeid or "<collection>"
            self.verdicts[name] = ("error", short(f"collection failed: {report.longreprtext}"))

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                self.verdicts[name] = ("skipped", f"xfail: {report.wasxfail}")
            elif report.passed:
                self.verdicts[name] = ("passed", "")
            elif report.skipped:
                self.verdicts[name] = ("skipped", "skipped")
            else:
                self.verdicts[name] = ("failed", short(report.longreprtext))
        elif report.failed:  # setup or teardown errors fail the test whatever its call did
            self.verdicts[name] = ("error", short(f"{report.when}: {report.longreprtext}"))
        elif report.skipped and name not in self.verdicts:
            self.verdicts[name] = ("skipped", "skipped")


def _run_pytest(job: CandidateJob, report: Report) -> None:
    import pytest  # imported by the worker before forking, so this is free

    for relpath, content in job.get("files", []):
        os.makedirs(os.path.dirname(relpath) or ".", exist_ok=True)
        with open(relpath, "w", encoding="utf-8") as fh:
            fh.write(content)
    with open(f"{job.get('module', 'solution')}.py", "w", encoding="utf-8") as fh:
        fh.write(job.get("program", ""))
    recorder = _PytestRecorder()
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    sys.path.insert(0, os.getcwd())
    argv = ["-q", "-p", "no:cacheprovider", "-p", "no:faulthandler", "--rootdir", "."]
    pytest.main([*argv, "-o", "addopts=", "."], plugins=[recorder])
    if not recorder.verdicts:
        raise TaskError("pytest collected no tests")
    for name, (status, message) in recorder.verdicts.items():
        report(name, status, message)


def run_inside(job: CandidateJob, namespace: dict[str, Any], report: Report) -> None:
    """Run the job's suite in this process; every test reports through ``report``."""
    kind = job.get("kind")
    if kind == "check":
        _run_check(job, report, namespace)
    elif kind == "asserts":
        _run_asserts(job, report, namespace)
    elif kind == "pytest":
        _run_pytest(job, report)
    else:
        raise TaskError(f"unknown test kind {kind!r}")


# --- serve mode: answer the judge's operations, one at a time -----------------------------


def _call(target: Any, *args: Any, **kwargs: Any) -> Any:
    return target(*args, **kwargs)


#: The operations a judge may ask for; each takes the target, then the call's arguments.
OPS: dict[str, Callable[..., Any]] = {
    "value": lambda target: target,
    "call": _call,
    "getattr": getattr,
    "setattr": setattr,
    "delattr": delattr,
    "len": len,
    "bool": bool,
    "str": str,
    "repr": repr,
    "iter": iter,
    "next": next,
    "getitem": operator.getitem,
    "setitem": operator.setitem,
    "delitem": operator.delitem,
    "contains": operator.contains,
}


class Handles:
    """Objects of the candidate's that the judge holds by number."""

    def __init__(self) -> None:
        self._objects: dict[int, Any] = {}
        self._ids: dict[int, int] = {}

    def add(self, obj: Any) -> int:
        key = id(obj)
        if key not in self._ids:
            self._ids[key] = len(self._objects) + 1
            self._objects[self._ids[key]] = obj
        return self._ids[key]

    def get(self, number: int) -> Any:
        if number not in self._objects:
            raise ValueError(f"no object with handle {number}")
        return self._objects[number]


def _files_in(call: dict[str, Any]) -> None:
    """Files the judge hands over with a call (a fixture's tmp_path, data next to tests)."""
    for path, data in call.get("files", []):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(bytes.fromhex(data))


def _files_out(roots: list[str], limit: int) -> list[list[str]]:
    """The files under ``roots`` after a call, for the judge to read back."""
    out: list[list[str]] = []
    budget = limit
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                with contextlib.suppress(OSError):
                    if os.path.islink(path) or os.path.getsize(path) > budget:
                        continue
                    with open(path, "rb") as fh:
                        data = fh.read(budget + 1)
                    budget -= len(data)
                    out.append([path, data.hex()])
    return out


def serve_one(
    call: dict[str, Any],
    namespace: dict[str, Any],
    handles: Handles | None,
    types: TaskTypes | None = None,
) -> dict[str, Any]:
    """The reply to one serve op."""
    reply: dict[str, Any] = {"id": call.get("id"), "t": "ret"}
    try:
        _files_in(call)
        target_ref = call.get("target")
        if type(target_ref) is list and target_ref[:1] == ["g"]:
            name = str(target_ref[1])
            if name not in namespace:
                raise NameError(f"name {name!r} is not defined")
            target = namespace[name]
        else:
            target = decode(target_ref, handles.get if handles else None)
        op = OPS[str(call.get("op"))]
        reader = handles.get if handles else None
        maker = types.make if types is not None else None
        args = decode(call.get("args", ["t", []]), reader, task_type=maker)
        kwargs = decode(call.get("kwargs", ["d", []]), reader, task_type=maker)
    except BaseException as exc:
        return {**reply, "t": "raise", "type": builtin_name(exc), "message": describe(exc)}
    try:
        result = op(target, *args, **kwargs)
    except BaseException as exc:
        return {**reply, "t": "raise", "type": builtin_name(exc), "message": describe(exc)}
    handle = handles.add if handles else None
    namer = types.name if types is not None else None
    try:
        reply.update(
            value=encode(result, handle, task_type=namer),
            args=encode(args, handle, task_type=namer),
        )
    except BaseException as exc:
        reply.update(t="bad_value", message=describe(exc))
    if call.get("sync"):
        reply["files"] = _files_out([str(r) for r in call["sync"]], 16 << 20)
    return reply


# --- the process's main loop ----------------------------------------------------------


def _lines(fd: int) -> Iterator[dict[str, Any]]:
    with os.fdopen(fd, "rb") as calls:
        for line in calls:
            message = json.loads(line)
            if type(message) is dict:
                yield message


def writer(fd: int) -> Reply:
    """Writes whole JSON lines to ``fd`` (blocking)."""

    def write(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(fd, data) :]

    return write


def answer_calls(job: CandidateJob, calls_fd: int, reply: Reply, line: int | None = None) -> None:
    """Answer the worker's calls until it closes the pipe; then the process exits. With a
    ``line`` (a socket to the judge's sandbox), once the program is loaded the judge's
    calls come straight over it, and are answered there, until the judge closes it."""
    namespace: dict[str, Any] = {}
    handles = Handles() if job.get("handles") else None
    types: TaskTypes | None = None
    for call in _lines(calls_fd):
        op, number = call.get("op"), call.get("id")
        if op == "load":
            try:
                program = compile(job.get("program", ""), "<candidate>", "exec")
            except (SyntaxError, ValueError) as exc:  # ValueError: source with NUL bytes
                reply({"id": number, "t": "syntax_error", "message": describe(exc)})
                return
            # A suite run inside imports the module itself; anything else runs it here.
            pytest_inside = job.get("kind") == "pytest" and job.get("mode") != "outside"
            try:
                if job.get("setup") and not pytest_inside:
                    exec(compile(job["setup"], "<setup>", "exec"), namespace)
                # The task's classes as its setup defines them, before the program runs
                # (one defined by the prompt is the program's own copy of it).
                task_classes = dict(namespace)
                if not pytest_inside:
                    exec(program, namespace)
                names = list(job.get("task_types", []))
                types = TaskTypes({**namespace, **task_classes}, names) if names else None
            except BaseException as exc:
                reply({"id": number, "t": "error", "message": describe(exc)})
                return
            reply({"id": number, "t": "ok"})
            if line is not None:
                answer = writer(line)
                for served in _lines(line):
                    answer(serve_one(served, namespace, handles, types))
                return
        elif op == "run":

            def report(name: str, status: str, message: str, number: Any = number) -> None:
                reply(
                    {"id": number, "t": "test", "name": name, "status": status, "message": message}
                )

            try:
                run_inside(job, namespace, report)
            except TaskError as exc:
                reply({"id": number, "t": "task_error", "message": short(str(exc))})
                return
            except BaseException as exc:
                reply({"id": number, "t": "error", "message": describe(exc)})
                return
            reply({"id": number, "t": "done"})
        else:
            reply(serve_one(call, namespace, handles, types))


__all__ = [
    "OPS",
    "CandidateError",
    "CandidateJob",
    "Handles",
    "RecordAsserts",
    "TaskError",
    "Unserializable",
    "answer_calls",
    "assert_recorder",
    "builtin_name",
    "compile_recorded",
    "describe",
    "run_inside",
    "serve_one",
    "short",
    "writer",
]
