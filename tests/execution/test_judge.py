"""Judging a worker's reply: positive evidence only (pure, no sandbox)."""

from __future__ import annotations

from typing import Any

from codealign.execution.judging.judge import Job, judge, normalize_output
from codealign.tasks import AssertsSuite, CheckSuite, IOCase, IOSuite, Task

CHECK = Task("c", "def f():\n", "f", CheckSuite("def check(c):\n    assert c()\n"))
ASSERTS = Task("a", "", "f", AssertsSuite(("assert f()", "assert f()")), prompt_style="text")
IO = Task("io", "", "f", IOSuite((IOCase("", "1 2\n"), IOCase("", "x"))), prompt_style="text")


def reply(*events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"events": list(events), "stdout": "", "stderr": "", "duration": 0.1, **extra}


def passed(name: str) -> dict[str, Any]:
    return {"t": "test", "name": name, "status": "passed"}


DONE = {"t": "done"}


def test_all_tests_passed_and_done_is_a_pass() -> None:
    result = judge(Job(0, CHECK, ""), reply(passed("check:L2"), DONE))
    assert result.status == "passed" and result.pass_rate == 1.0 and result.result == "passed"


def test_no_tests_is_not_a_pass() -> None:
    assert judge(Job(0, CHECK, ""), reply(DONE)).status == "failed"


def test_not_reaching_the_end_is_not_a_pass() -> None:
    result = judge(Job(0, CHECK, ""), reply(passed("check:L2"), exit_code=0))
    assert result.status == "error" and "exited before the tests finished" in result.message
    assert result.pass_rate == 0.5  # the interruption counts as a failed test


def test_lost_worker_is_a_sandbox_error() -> None:
    result = judge(Job(3, CHECK, ""), None)
    assert (result.status, result.sample_index, result.passed) == ("sandbox_error", 3, False)


def test_unreached_asserts_count_as_failures_and_foreign_names_do_not_count() -> None:
    result = judge(
        Job(0, ASSERTS, ""),
        reply(passed("test_list[0]"), passed("test_list[9]"), passed("bogus"), DONE),
    )
    assert [t.name for t in result.tests] == ["test_list[0]", "test_list[1]"]
    assert [t.status for t in result.tests] == ["passed", "not_run"]
    assert result.status == "failed" and result.pass_rate == 0.5


def test_a_failing_report_beats_a_passing_one_for_the_same_test() -> None:
    failed = {"t": "test", "name": "test_list[0]", "status": "failed", "message": "no"}
    result = judge(
        Job(0, ASSERTS, ""), reply(passed("test_list[0]"), failed, passed("test_list[1]"), DONE)
    )
    assert result.tests[0].status == "failed" and result.status == "failed"


def test_timeout_marks_unreached_tests() -> None:
    result = judge(Job(0, ASSERTS, ""), reply(passed("test_list[0]"), timed_out=True))
    assert result.status == "timeout" and result.result == "timed out"
    assert [t.status for t in result.tests] == ["passed", "timeout"]


def test_syntax_error() -> None:
    result = judge(Job(0, ASSERTS, ""), reply({"t": "syntax_error", "message": "bad"}))
    assert result.status == "syntax_error" and result.message == "bad"
    assert result.result == "failed: bad"


def test_io_is_compared_on_the_host() -> None:
    events = [
        {"t": "io", "index": 0, "exit": 0, "stdout": "1 2   \n\n"},  # trailing space/lines ok
        {"t": "io", "index": 1, "exit": 0, "stdout": "y"},
    ]
    result = judge(Job(0, IO, ""), reply(*events, DONE))
    assert [t.status for t in result.tests] == ["passed", "failed"]
    crashed = judge(
        Job(0, IO, ""), reply({"t": "io", "index": 0, "exit": 1, "stdout": "1 2"}, DONE)
    )
    assert [t.status for t in crashed.tests] == ["error", "not_run"]


def test_normalize_output() -> None:
    assert normalize_output("a \r\nb\t\n\n\n") == ["a", "b"]
    assert normalize_output("") == []
    assert normalize_output(" a") == [" a"]  # leading space matters
