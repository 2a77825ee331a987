"""Judging outside the sandbox: the test code runs here, the candidate only answers calls.

For check and asserts suites, the task's own test code (HumanEval's ``check``, MBPP's
asserts, loops and random inputs included) runs in this trusted process with the
candidate's functions bound to proxies. A proxy sends the call's arguments into the
sandbox as plain data and gets the return value back as plain data of exact built-in
types, so the comparison happens here with Python's own semantics: an always-equal
object, a rigged int subclass, patched builtins or a peek at the caller's frame inside
the sandbox change nothing, and expected values never enter the sandbox.

Whether a task can be judged this way is decided from the task alone (never from what a
candidate does): test code that needs names only the candidate defines as classes or
data (MBPP's ``Pair(...)``) runs inside the sandbox instead.
"""

from __future__ import annotations

import ast
import builtins
import functools
import time
from dataclasses import dataclass
from typing import Any

from codealign.execution.worker_pool import Session
from codealign.sandbox.runner import (
    Unserializable,
    _describe,
    _RecordAsserts,
    _short,
    assert_recorder,
    decode,
    encode,
)
from codealign.tasks import AssertsSuite, CheckSuite, Task


class Fallback(Exception):
    """The task's own test code cannot be judged outside (decided by the task, not the sample)."""


class _Ended(BaseException):
    """The candidate's run ended (timeout, crash, exit) while a call was pending."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one."""


@dataclass(frozen=True)
class Plan:
    """How to judge a task outside: the host-side prelude and which names are proxied."""

    prelude: str  # trusted code run before the tests here: the code prompt or the setup
    test_code: Any  # compiled, asserts recorded (check) or None (asserts: per test)
    proxied: tuple[str, ...]


def _bound_and_loaded(tree: ast.AST) -> tuple[set[str], set[str]]:
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, loaded


def _top_level_functions(source: str | None) -> set[str]:
    if not source:
        return set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


@functools.lru_cache(maxsize=4096)
def plan_for(task: Task) -> Plan | None:
    """The outside plan for ``task``, or None when its tests must run inside the sandbox."""
    suite = task.tests
    if isinstance(suite, CheckSuite):
        prelude = task.prompt if task.prompt_style == "code" else ""
        sources = [suite.code]
    elif isinstance(suite, AssertsSuite):
        prelude = suite.setup
        sources = [suite.setup, *suite.asserts]
    else:
        return None
    try:
        trees = [ast.parse(src) for src in sources]
        namespace: dict[str, Any] = {}
        exec(compile(prelude, "<prelude>", "exec"), namespace)  # trusted task code
    except BaseException:
        return None
    bound, loaded = set(namespace), set()
    for tree in trees:
        b, ld = _bound_and_loaded(tree)
        bound |= b
        loaded |= ld
    unresolved = loaded - bound - set(dir(builtins)) - {task.entry_point}
    # Other functions the tests call are proxied too when the reference solution shows
    # they are functions; anything else (a class, a constant) needs the candidate's objects.
    helpers = _top_level_functions(task.canonical_program())
    if not unresolved <= helpers:
        return None
    test_code = None
    if isinstance(suite, CheckSuite):
        tree = _RecordAsserts(suite.code).visit(trees[0])
        test_code = compile(ast.fix_missing_locations(tree), "<test>", "exec")
    return Plan(prelude, test_code, (task.entry_point, *sorted(unresolved)))


class _Conversation:
    """Calls into the sandbox over a worker session; collects the sandbox's own events."""

    def __init__(self, session: Session, deadline: float) -> None:
        self.session = session
        self.deadline = deadline
        self.events: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.calls = 0

    def next_event(self) -> dict[str, Any] | None:
        """The next event from the candidate's process; None once the run has ended."""
        if self.final is not None:
            return None
        message = self.session.receive(max(0.0, self.deadline - time.monotonic()))
        if message is None:
            self.final = {"lost": True}
            return None
        if message.get("final"):
            self.final = message
            return None
        event = message.get("event")
        if isinstance(event, dict):
            self.events.append(event)
            return event
        return self.next_event()

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            payload = {"name": name, "args": encode(args), "kwargs": encode(kwargs)}
        except Unserializable as exc:  # the test passes something no sandbox can receive
            raise Fallback(str(exc)) from None
        self.calls += 1
        call_id = self.calls
        if self.final is not None or not self.session.send({"call": {"id": call_id, **payload}}):
            raise _Ended
        while (event := self.next_event()) is not None:
            if event.get("id") != call_id:
                continue
            kind = event.get("t")
            if kind == "ret":
                try:
                    value = decode(event.get("value"))
                    after = decode(event["args"]) if "args" in event else None
                except (ValueError, KeyError):
                    raise CandidateError("the sandbox returned malformed data") from None
                _copy_back(args, after)
                return value
            if kind == "raise":
                raise _rebuild_exception(str(event.get("type")), str(event.get("message", "")))
            raise CandidateError(
                f"returned something that is not plain data: "
                f"{_short(str(event.get('message', '')))}"
            )
        raise _Ended

    def end(self) -> dict[str, Any]:
        if self.final is None:
            self.session.send({"end": True})
            while self.next_event() is not None:
                pass
        assert self.final is not None
        return self.final


def _copy_back(args: tuple[Any, ...], after: Any) -> None:
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


def _rebuild_exception(name: str, message: str) -> Exception:
    """The candidate's exception as a host exception of the same built-in type, if any."""
    cls = getattr(builtins, name, None)
    text = message.partition(": ")[2] if message.startswith(name) else message
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:
            pass
    return CandidateError(message)


class _Proxy:
    def __init__(self, conversation: _Conversation, name: str) -> None:
        self._conversation = conversation
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._conversation.call(self.__name__, args, kwargs)


def run_outside(
    session: Session, task: Task, plan: Plan, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one job judged outside; returns a reply in the shape ``judge`` reads.

    Raises Fallback when the task turns out to need judging inside after all.
    """
    conversation = _Conversation(session, time.monotonic() + timeout)
    serve = {**payload, "kind": "serve"}
    serve.pop("test", None)
    serve.pop("asserts", None)
    if not session.send(serve):
        return {"lost": True}
    host_events: list[dict[str, Any]] = []
    ready = False
    while (event := conversation.next_event()) is not None:
        if event.get("t") == "ready":
            ready = True
            break
    if ready:
        try:
            finished = _run_tests(task, plan, conversation, host_events)
        except Fallback:
            conversation.end()
            raise
        if finished:
            host_events.append({"t": "done"})
    final = conversation.end()
    if final.get("lost"):
        return {"lost": True}
    # Of the sandbox's events only its own failures count; verdicts are ours.
    sandbox = [e for e in conversation.events if e.get("t") in ("syntax_error", "error")]
    return {**final, "events": sandbox + host_events, "judged_outside": True}


def _run_tests(
    task: Task, plan: Plan, conversation: _Conversation, events: list[dict[str, Any]]
) -> bool:
    """Run the task's tests here; False when the candidate's run ended under them."""
    namespace: dict[str, Any] = {}
    exec(compile(plan.prelude, "<prelude>", "exec"), namespace)
    proxies = {name: _Proxy(conversation, name) for name in plan.proxied}
    namespace.update(proxies)
    last = time.perf_counter()

    def test(name: str, status: str, message: str = "") -> None:
        nonlocal last
        now = time.perf_counter()
        events.append(
            {
                "t": "test",
                "name": name,
                "status": status,
                "message": message,
                "duration": round(now - last, 6),
            }
        )
        last = now

    try:
        if isinstance(task.tests, CheckSuite):
            namespace["__codealign_record__"] = assert_recorder(test, (_Ended, Fallback))
            exec(plan.test_code, namespace)
            try:
                namespace["check"](proxies[task.entry_point])
            except (_Ended, Fallback):
                raise
            except (Exception, SystemExit) as exc:  # outside any assert: the check failed
                test("<check>", "error", _describe(exc))
        else:
            assert isinstance(task.tests, AssertsSuite)
            for index, source in enumerate(task.tests.asserts):
                name = f"test_list[{index}]"
                try:
                    exec(compile(source, f"<test {index}>", "exec"), namespace)
                except AssertionError:
                    test(name, "failed", _short(source))
                except (_Ended, Fallback):
                    raise
                except (Exception, SystemExit) as exc:
                    test(name, "error", f"{_short(source)} -> {_describe(exc)}")
                else:
                    test(name, "passed")
    except _Ended:
        return False
    return True
