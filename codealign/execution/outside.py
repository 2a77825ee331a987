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
data (MBPP's ``Pair(...)``) runs inside the sandbox instead. A test that hands the
candidate something that is not plain data fails; it never moves the judging inside,
which a candidate could otherwise steer.
"""

from __future__ import annotations

import ast
import builtins
import functools
import time
from dataclasses import dataclass
from typing import Any

from codealign.execution.conversation import Conversation, Ended, NotPlainData
from codealign.execution.worker_pool import Session
from codealign.sandbox.candidate import RecordAsserts, assert_recorder, describe, short
from codealign.tasks import AssertsSuite, CheckSuite, Task


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
        tree = RecordAsserts(suite.code).visit(trees[0])
        test_code = compile(ast.fix_missing_locations(tree), "<test>", "exec")
    return Plan(prelude, test_code, (task.entry_point, *sorted(unresolved)))


class _Proxy:
    def __init__(self, conversation: Conversation, name: str) -> None:
        self._conversation = conversation
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._conversation.request("call", ["g", self.__name__], args, kwargs)


def run_outside(
    session: Session, task: Task, plan: Plan, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Run one job judged outside; returns a reply in the shape ``judge`` reads."""
    conversation = Conversation(session, time.monotonic() + timeout)
    serve = {k: v for k, v in payload.items() if k not in ("test", "asserts")}
    if not conversation.start({**serve, "mode": "outside", "handles": False}):
        return conversation.finish([])
    host_events: list[dict[str, Any]] = []
    if _run_tests(task, plan, conversation, host_events):
        host_events.append({"t": "done"})
    return conversation.finish(host_events)


def _run_tests(
    task: Task, plan: Plan, conversation: Conversation, events: list[dict[str, Any]]
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
            namespace["__codealign_record__"] = assert_recorder(test, (Ended,))
            exec(plan.test_code, namespace)
            try:
                namespace["check"](proxies[task.entry_point])
            except Ended:
                raise
            except (Exception, SystemExit) as exc:  # outside any assert: the check failed
                test("<check>", "error", describe(exc))
        else:
            assert isinstance(task.tests, AssertsSuite)
            for index, source in enumerate(task.tests.asserts):
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


__all__ = ["NotPlainData", "Plan", "plan_for", "run_outside"]
