"""Held-back tests are a function of the task alone: the names each suite kind declares
(read statically, as the judge will report them), the matcher from a reported name to
its declared test, and the same held set in iterate, the verifier, verl and TRL, which
no answer (a time-out included) can move."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from codealign.execution.judging.judge import Job, judge
from codealign.execution.records.results import ExecResult
from codealign.rewards import verl
from codealign.rewards.trl import ExecutionReward
from codealign.rewards.verifier import Answer, Verifier
from codealign.sandbox.candidate import assert_recorder, compile_recorded
from codealign.scoring.heldback import (
    check_tests,
    declared_tests,
    held_back,
    heldback_tests,
    monitor,
    pytest_tests,
    reward_view,
    unit_of,
)
from codealign.tasks import AssertsSuite, CheckSuite, IOSuite, PytestSuite, Task
from codealign.tasks.model import IOCase
from codealign.tasks.native import to_native

# An assert per line, in loops, helpers, a class body and at module level.
CHECK_CODE = (
    "def check(candidate):\n"  # 1
    "    assert candidate(1) == 2\n"  # 2
    "    for x in range(3):\n"  # 3
    "        assert candidate(x) > x\n"  # 4
    "    def helper(y):\n"  # 5
    "        assert candidate(y) == y + 1\n"  # 6
    "    helper(2)\n"  # 7
    "    class Inner:\n"  # 8
    "        assert candidate(0) == 1\n"  # 9
    "    (lambda: None)()\n"  # 10
    "assert 1 + 1 == 2\n"  # 11
)

PYTEST_FILES = (
    ("b_test.py", "def test_w():\n    pass\n"),
    ("conftest.py", "def test_not_a_test():\n    pass\n"),
    ("helpers.py", "def test_helper():\n    pass\n"),
    (
        "tests/test_a.py",
        "import pytest\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_x(x):\n    pass\n"
        "async def test_async():\n    pass\n"
        "def testing_too():\n    pass\n"
        "def helper():\n    pass\n"
        "class TestB:\n"
        "    def test_y(self):\n        pass\n"
        "    def helper(self):\n        pass\n"
        "    class TestInner:\n"
        "        def test_z(self):\n            pass\n"
        "class TestWithInit:\n"
        "    def __init__(self):\n        pass\n"
        "    def test_no(self):\n        pass\n"
        "class Other:\n"
        "    def test_no(self):\n        pass\n",
    ),
)


def test_asserts_and_io_declare_one_test_each() -> None:
    asserts = Task("a", "", "f", AssertsSuite(("assert f() == 1", "assert f() != 2")))
    io = Task("i", "", "f", IOSuite((IOCase("1", "1"), IOCase("2", "2"), IOCase("3", "3"))))
    assert declared_tests(asserts) == {"test_list[0]", "test_list[1]"}
    assert declared_tests(io) == {"case[0]", "case[1]", "case[2]"}


def test_check_asserts_are_named_by_their_enclosing_function_and_line() -> None:
    """Worked by hand from CHECK_CODE: the class body is no scope, ``helper`` is."""
    assert check_tests(CHECK_CODE) == [
        "<module>:L11",
        "check:L2",
        "check:L4",
        "check:L9",
        "helper:L6",
    ]
    assert check_tests("def check(candidate):\n    assert (\n") == []  # does not parse


def test_check_names_are_the_ones_the_judge_reports() -> None:
    """The judge's own assert recorder run over CHECK_CODE: every name it reports (the
    loop's assert three times) is one declared test, and each declared test is reached."""
    reported: list[str] = []
    record = assert_recorder(lambda name, status, message: reported.append(name))
    namespace: dict[str, Any] = {"__codealign_record__": record}
    exec(compile_recorded(CHECK_CODE), namespace)
    namespace["check"](lambda x: x + 1)
    assert "check:L4#3" in reported and len(reported) == 7
    declared = frozenset(check_tests(CHECK_CODE))
    assert {unit_of(name, declared) for name in reported} == declared


def test_pytest_functions_are_found_statically() -> None:
    """pytest's defaults: test_*.py and *_test.py files; ``test*`` functions at module level
    or in ``Test*`` classes (nested ones too) that have no ``__init__``."""
    assert pytest_tests(PYTEST_FILES) == [
        "b_test.py::test_w",
        "tests/test_a.py::TestB::TestInner::test_z",
        "tests/test_a.py::TestB::test_y",
        "tests/test_a.py::test_async",
        "tests/test_a.py::test_x",
        "tests/test_a.py::testing_too",
    ]
    assert pytest_tests((("./test_c.py", "def test_c(): pass\n"),)) == ["test_c.py::test_c"]
    assert pytest_tests((("test_d.py", "def test_d(:\n"),)) == []


def test_a_reported_name_maps_to_its_declared_test() -> None:
    units = frozenset(pytest_tests(PYTEST_FILES)) | {"check:L5"}
    assert unit_of("tests/test_a.py::test_x[1]", units) == "tests/test_a.py::test_x"
    assert unit_of("tests/test_a.py::test_x[a[b]-::c]", units) == "tests/test_a.py::test_x"
    assert unit_of("tests/test_a.py::TestB::test_y", units) == "tests/test_a.py::TestB::test_y"
    assert unit_of("check:L5#12", units) == "check:L5"
    for other in ("<run>", "<check>", "<collection>", "<module>", "tests/test_a.py",
                  "tests/test_a.py::test_xy", "check:L50", "test_x[1]"):  # fmt: skip
        assert unit_of(other, units) is None


def test_pytest_names_match_what_pytest_collects(tmp_path: Path) -> None:
    """pytest's own node ids for PYTEST_FILES (collected, not run) against the static
    derivation: each id belongs to a declared test, and every declared test is found."""
    for relpath, content in PYTEST_FILES:
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-o", "addopts=", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert "tests/test_a.py::test_x[1]" in ids, done.stdout + done.stderr
    declared = frozenset(pytest_tests(PYTEST_FILES))
    assert {unit_of(i, declared) for i in ids} == declared


# --- one held set, whatever the path ---------------------------------------------------------

THREE = "def check(candidate):\n" + "".join(
    f"    assert candidate({i}) == {i + 1}\n" for i in (1, 2, 3)
)  # asserts on lines 2, 3, 4
FOUR = THREE + "    assert candidate(4) == 5\n"


def check_task(task_id: str, code: str) -> Task:
    return Task(task_id, "def f(x):\n", "f", CheckSuite(code))


def reply(passed: Iterable[str], failed: Iterable[str] = (), timed_out: bool = False) -> Any:
    """What the sandbox would answer for an answer that passes and fails these tests."""
    events: list[dict[str, Any]] = [{"t": "test", "name": n, "status": "passed"} for n in passed]
    events += [{"t": "test", "name": n, "status": "failed"} for n in failed]
    if not timed_out:
        events.append({"t": "done"})
    return {"events": events, "timed_out": timed_out}


class Scripted:
    """An executor answering each program with the reply scripted for the marker it holds
    (the real judge turns the reply into the result)."""

    name = "scripted"

    def __init__(self, replies: Mapping[str, Any]) -> None:
        self.replies = replies

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]:
        for job in jobs:
            yield judge(job, self.replies[job.program.rsplit("# ", 1)[1].strip()])

    def close(self) -> None:
        pass

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def scripted(tasks: list[Task], replies: Mapping[str, Any]) -> Verifier:
    verifier = Verifier(tasks)
    verifier._holder[0] = Scripted(replies)
    return verifier


def answer(task: Task, marker: str) -> Answer:
    return Answer(task.task_id, completion=f"    return x + 1  # {marker}\n")


def test_a_timed_out_answer_moves_no_test_out_of_the_reward() -> None:
    """The bug: a right answer, then one that timed out (its run reports ``<run>``), made
    four names of a three-assert task, so one test left every later reward; a wrong
    answer failing only it was rewarded 1. Now the task holds none back, whatever ran."""
    task = check_task("t/three", THREE)
    names = ["check:L2", "check:L3", "check:L4"]
    replies = {"right": reply(names), "slow": reply(names[:2], timed_out=True)}
    replies |= {f"wrong{i}": reply(names[:i] + names[i + 1 :], [names[i]]) for i in range(3)}
    verifier = scripted([task], replies)
    assert held_back(task, 0.25, 4) == frozenset()
    right, slow = verifier.verify([answer(task, "right"), answer(task, "slow")])
    assert right.pass_rate == 1.0 and right.heldback_pass_rate is None
    assert slow.status == "timeout" and not slow.passed
    assert slow.pass_rate == pytest.approx(2 / 3)  # <run> stays: 2 of 3 verdicts pass
    for i in range(3):
        (wrong,) = verifier.verify([answer(task, f"wrong{i}")])
        assert wrong.pass_rate == pytest.approx(2 / 3) and not wrong.passed
        assert wrong.heldback_pass_rate is None
    assert held_back(task, 0.25, 4) == frozenset()


def test_a_time_out_fails_the_reward_of_a_task_that_holds_tests_back() -> None:
    task = check_task("t/four", FOUR)
    (held,) = held_back(task, 0.25, 4)  # 4 declared asserts: one held back
    names = ["check:L2", "check:L3", "check:L4", "check:L5"]
    reward_names = [n for n in names if n != held]
    verifier = scripted([task], {"slow": reply(reward_names, timed_out=True)})
    (slow,) = verifier.verify([answer(task, "slow")])
    # The three reward tests passed, then the run timed out: <run> is a reward verdict.
    assert slow.status == "timeout" and slow.pass_rate == pytest.approx(3 / 4)
    assert slow.heldback_pass_rate == 0.0  # the held test never reported: none passed
    assert [t.name for t in slow.seen.tests] == [*reward_names, "<run>"]
    assert held_back(task, 0.25, 4) == {held}


def test_every_path_holds_back_the_same_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """iterate's score stage, the verifier (serve), verl's compute_score and TRL's reward
    all hide exactly the task's held-back test: failing only it keeps the reward at 1,
    failing only a reward test lowers it."""
    pytest_file = (
        "import pytest\n\n"
        "def test_a():\n    pass\n\n"
        "@pytest.mark.parametrize('x', [1, 2])\n"
        "def test_b(x):\n    pass\n\n"
        "class TestC:\n"
        "    def test_c(self):\n        pass\n\n"
        "    def test_d(self):\n        pass\n"
    )
    tasks = [
        check_task("p/check", FOUR),
        Task("p/asserts", "def f(x):\n", "f", AssertsSuite(tuple(f"f({i})" for i in range(4)))),
        Task("p/pytest", "def f(x):\n", "f", PytestSuite((("test_s.py", pytest_file),))),
    ]  # fmt: skip
    reported = {
        "p/check": ["check:L2", "check:L3", "check:L4", "check:L5"],
        "p/asserts": [f"test_list[{i}]" for i in range(4)],
        "p/pytest": ["test_s.py::test_a", "test_s.py::test_b[1]", "test_s.py::test_b[2]",
                     "test_s.py::TestC::test_c", "test_s.py::TestC::test_d"],
    }  # fmt: skip
    held = heldback_tests({t.task_id: t for t in tasks}, 0.25, 4)  # what iterate uses
    assert set(held) == set(reported) and all(len(h) == 1 for h in held.values())
    replies, expected, answers = {}, {}, []
    for task in tasks:
        names = reported[task.task_id]
        for name in names:
            units = declared_tests(task)
            hidden = unit_of(name, held[task.task_id]) is not None
            same_unit = [n for n in names if unit_of(n, units) == unit_of(name, units)]
            marker = f"{task.task_id}:{name}"
            replies[marker] = reply([n for n in names if n not in same_unit], same_unit)
            visible = [n for n in names if unit_of(n, held[task.task_id]) is None]
            expected[marker] = 1.0 if hidden else pytest.approx(1 - len(same_unit) / len(visible))
            answers.append(answer(task, marker))
    markers = list(replies)
    by_task = {t.task_id: t for t in tasks}
    verifier = scripted(tasks, replies)
    verdicts = verifier.verify(answers)
    assert [v.pass_rate for v in verdicts] == [expected[m] for m in markers]
    # iterate: the reward view of the same results, and its monitor.
    iterate = [reward_view(v.result, held).pass_rate for v in verdicts]
    assert iterate == [v.pass_rate for v in verdicts]
    assert monitor([v.result for v in verdicts], held)["tasks_monitored"] == 3
    # verl: rows that carry their tasks, through this process's verifier.
    monkeypatch.setitem(verl._verifiers, ("", "{}"), verifier)
    rows = verl.compute_score_batch(
        ["d"] * len(markers),
        [f"    return x + 1  # {m}\n" for m in markers],
        [to_native(a_task) for a_task in (by_task[a.task_id] for a in answers)],
        [{"prompt_format": "completion"}] * len(markers),
    )
    assert [r["pass_rate"] for r in rows] == [v.pass_rate for v in verdicts]
    assert all(r["monitored"] == 1.0 for r in rows)
    # TRL: plain completions naming their task.
    reward = ExecutionReward(verifier, name="x")
    rewards = reward(
        prompts=[by_task[a.task_id].prompt for a in answers],
        completions=[f"    return x + 1  # {m}\n" for m in markers],
        task_id=[a.task_id for a in answers],
    )
    assert rewards == [v.pass_rate for v in verdicts]
