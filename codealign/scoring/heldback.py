"""Held-back tests: the overoptimisation monitor.

Where a task has enough tests, a fixed part of them never reaches the reward: samples are
run against every test, but the scorer only sees the verdicts of the reward tests. The
pass rate on the held-back tests then tells whether the policy learns the task or the
reward tests; reward hacking shows up as a widening gap between the two.

Which tests are held back is a function of the task alone (the tests it declares, read
statically), so every path (``iterate``, the verifier behind serve, verl and TRL) holds
back the same ones and no answer can move them: an answer that times out, or reports
names of its own, never changes the tests another answer is rewarded on.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from codealign.execution.records.results import ExecResult, TestVerdict
from codealign.tasks import Task
from codealign.tasks.model import AssertsSuite, CheckSuite, IOSuite, PytestSuite

#: pytest's default ``python_files``: the files it collects tests from.
_PYTEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")
#: A check assert reached again is reported as ``check:L5#2``: the same declared assert.
_REPEAT = re.compile(r"#\d+$")


def _rank(task_id: str, name: str) -> str:
    return hashlib.sha256(f"{task_id}\0{name}".encode()).hexdigest()


def _parsed(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _asserts(node: ast.AST, scope: str) -> Iterator[str]:
    """``scope:L<line>`` for each assert under ``node``, as the judge's RecordAsserts names
    them: the scope is the innermost enclosing function (classes do not count)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Assert):
            yield f"{scope}:L{child.lineno}"
        inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope
        yield from _asserts(child, inner)


def check_tests(code: str) -> list[str]:
    """The test names a check suite's asserts are reported under (no names when it does
    not parse: then it reports none either)."""
    tree = _parsed(code)
    try:
        return sorted(set(_asserts(tree, "<module>"))) if tree is not None else []
    except RecursionError:
        return []


def _is_test_class(node: ast.ClassDef) -> bool:
    """A class pytest collects: named ``Test*``, without an ``__init__``."""
    return node.name.startswith("Test") and not any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "__init__"
        for n in node.body
    )


def _pytest_functions(body: Sequence[ast.stmt], prefix: str) -> Iterator[str]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name.startswith("test"):
                yield f"{prefix}::{node.name}"
        elif isinstance(node, ast.ClassDef) and _is_test_class(node):
            yield from _pytest_functions(node.body, f"{prefix}::{node.name}")


def pytest_tests(files: Sequence[tuple[str, str]]) -> list[str]:
    """The test functions of a pytest suite as node ids (``tests/test_a.py::test_x``,
    ``test_b.py::TestB::test_y``): functions named ``test*`` at module level or in
    ``Test*`` classes of the files pytest collects by default. One function is one test
    whatever its parameters (``test_x[1]`` and ``test_x[2]`` are both ``test_x``)."""
    out: set[str] = set()
    for relpath, content in files:
        path = PurePosixPath(relpath)
        if not _PYTEST_FILE.match(path.name):
            continue
        tree = _parsed(content)
        if tree is not None:
            out.update(_pytest_functions(tree.body, path.as_posix()))
    return sorted(out)


@functools.lru_cache(maxsize=4096)
def declared_tests(task: Task) -> frozenset[str]:
    """The task's own tests, known without running anything: one name per assert (asserts
    and check suites), io case, or pytest test function."""
    suite = task.tests
    if isinstance(suite, AssertsSuite):
        return frozenset(f"test_list[{i}]" for i in range(len(suite.asserts)))
    if isinstance(suite, IOSuite):
        return frozenset(f"case[{i}]" for i in range(len(suite.cases)))
    if isinstance(suite, CheckSuite):
        return frozenset(check_tests(suite.code))
    assert isinstance(suite, PytestSuite)
    return frozenset(pytest_tests(suite.files))


def unit_of(name: str, tests: frozenset[str]) -> str | None:
    """The test of ``tests`` that a result's verdict ``name`` reports on: the name itself,
    a check assert reached again (``check:L5#2``), or one parameter set of a pytest
    function (``test_a.py::test_x[1-2]``); None for any other name (``<run>``,
    ``<check>``, a collection error)."""
    if name in tests:
        return name
    again = _REPEAT.sub("", name)
    if again in tests:
        return again
    for at in (i for i, c in enumerate(name) if c == "["):
        if name[:at] in tests:
            return name[:at]
    return None


@functools.lru_cache(maxsize=4096)
def held_back(task: Task, fraction: float, min_tests: int) -> frozenset[str]:
    """The task's held-back tests: a share of its declared tests picked by a hash of each
    name; none when it declares fewer than ``min_tests`` (and at least one always stays)."""
    tests = declared_tests(task)
    if fraction <= 0 or len(tests) < max(min_tests, 2):
        return frozenset()
    k = min(len(tests) - 1, max(1, int(fraction * len(tests))))
    return frozenset(sorted(tests, key=lambda n: _rank(task.task_id, n))[:k])


def heldback_tests(
    tasks: Mapping[str, Task], fraction: float, min_tests: int
) -> dict[str, frozenset[str]]:
    """The held-back tests of each task that holds any back."""
    held = {task_id: held_back(task, fraction, min_tests) for task_id, task in tasks.items()}
    return {task_id: names for task_id, names in held.items() if names}


def is_held(verdict: TestVerdict, heldback: frozenset[str]) -> bool:
    """Whether ``verdict`` reports on a held-back test."""
    return unit_of(verdict.name, heldback) is not None


def _restricted(result: ExecResult, keep: bool, heldback: frozenset[str]) -> ExecResult:
    """``result`` with only the reward tests (keep=True) or only the held-back ones.

    A verdict on no declared test (``<run>`` after a time-out) is a reward verdict: what
    went wrong is never hidden from the reward."""
    tests = [t for t in result.tests if is_held(t, heldback) != keep]
    status = result.status
    if status in ("passed", "failed"):
        status = "passed" if tests and all(t.passed for t in tests) else "failed"
    return dataclasses.replace(result, tests=tests, status=status)


def reward_view(result: ExecResult, heldback: Mapping[str, frozenset[str]]) -> ExecResult:
    """What the reward may see of ``result``: its held-back verdicts removed."""
    names = heldback.get(result.task_id)
    return result if not names else _restricted(result, True, names)


def monitor(
    results: Sequence[ExecResult], heldback: Mapping[str, frozenset[str]]
) -> dict[str, Any]:
    """Reward tests against held-back tests over the samples of monitored tasks."""
    reward_rates, held_rates, reward_passes, both = [], [], 0, 0
    for r in results:
        names = heldback.get(r.task_id)
        if not names:
            continue
        seen, unseen = _restricted(r, True, names), _restricted(r, False, names)
        reward_rates.append(seen.pass_rate)
        held_rates.append(unseen.pass_rate)
        if seen.passed:
            reward_passes += 1
            both += unseen.passed
    if not reward_rates:
        return {"tasks_monitored": 0, "samples_monitored": 0}
    reward = sum(reward_rates) / len(reward_rates)
    held = sum(held_rates) / len(held_rates)
    return {
        "tasks_monitored": len({r.task_id for r in results if heldback.get(r.task_id)}),
        "samples_monitored": len(reward_rates),
        "reward_tests_pass_rate": round(reward, 6),
        "heldback_tests_pass_rate": round(held, 6),
        "gap": round(reward - held, 6),
        # Of the samples that pass every reward test, the share that also pass every
        # held-back test: it drops when the policy fits the visible tests only.
        "heldback_pass_given_reward_pass": round(both / reward_passes, 6)
        if reward_passes
        else None,
    }
