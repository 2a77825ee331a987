"""Turning a task and a program into a sandbox job, and the sandbox's reply into a verdict.

The judging side runs on the host: a test passes only on positive evidence (a "passed"
event for it, and the run reaching its end); io outputs are compared here, so expected
outputs never enter the sandbox.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from codealign.execution.records.results import ExecResult, Status, TestStatus, TestVerdict
from codealign.tasks import AssertsSuite, CheckSuite, IOSuite, PytestSuite, Task


@dataclass(frozen=True)
class Job:
    sample_index: int
    task: Task
    program: str


def job_payload(job: Job, limits: dict[str, Any]) -> dict[str, Any]:
    """The plain-data job the runner executes."""
    payload: dict[str, Any] = {
        "program": job.program,
        "entry_point": job.task.entry_point,
        "limits": limits,
        "mode": "inside",
    }
    suite = job.task.tests
    if isinstance(suite, CheckSuite):
        payload.update(kind="check", test=suite.code)
    elif isinstance(suite, AssertsSuite):
        payload.update(kind="asserts", asserts=list(suite.asserts), setup=suite.setup)
    elif isinstance(suite, PytestSuite):
        payload.update(kind="pytest", files=[list(f) for f in suite.files], module=suite.module)
        if suite.judge == "outside":  # the tests stay with the judge
            payload.update(files=[], mode="outside")
    else:
        payload.update(kind="io", inputs=[case.input for case in suite.cases])
    return payload


def normalize_output(text: str) -> list[str]:
    """Lines without trailing whitespace and without trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _io_verdicts(suite: IOSuite, events: list[dict[str, Any]]) -> list[TestVerdict]:
    verdicts = []
    for event in events:
        if event.get("t") != "io" or not isinstance(event.get("index"), int):
            continue
        index = event["index"]
        if not 0 <= index < len(suite.cases):
            continue
        name = f"case[{index}]"
        if event.get("overflow"):
            verdicts.append(TestVerdict(name, "failed", "output limit exceeded"))
        elif event.get("exit") != 0:
            verdicts.append(TestVerdict(name, "error", f"exit status {event.get('exit')}"))
        elif normalize_output(_text(event.get("stdout", ""), 1 << 30)) == normalize_output(
            suite.cases[index].output
        ):
            verdicts.append(TestVerdict(name, "passed"))
        else:
            got = str(event.get("stdout", ""))[:80]
            verdicts.append(TestVerdict(name, "failed", f"wrong output: {got!r}"))
    return verdicts


def _expected_names(task: Task) -> list[str] | None:
    """Test names known before running, so unreached tests count as failures."""
    suite = task.tests
    if isinstance(suite, AssertsSuite):
        return [f"test_list[{i}]" for i in range(len(suite.asserts))]
    if isinstance(suite, IOSuite):
        return [f"case[{i}]" for i in range(len(suite.cases))]
    return None


_TEST_STATUSES: set[str] = set(typing.get_args(TestStatus))
#: What one result row may hold: message and name lengths, output tails, tests.
MESSAGE_CHARS = 300
TAIL_CHARS = 4096
MAX_TESTS = 10_000


def _test_verdicts(events: list[dict[str, Any]]) -> list[TestVerdict]:
    """One verdict per test name; malformed events are ignored, and of two reports for one
    name the failing one wins (a pass is never taken on a report that could be a copy)."""
    verdicts: dict[str, TestVerdict] = {}
    for e in events:
        status, name = e.get("status"), str(e.get("name", ""))
        if e.get("t") != "test" or status not in _TEST_STATUSES:
            continue
        if name in verdicts and not verdicts[name].passed:
            continue
        if name not in verdicts and len(verdicts) >= MAX_TESTS:
            continue
        verdicts[name] = TestVerdict(
            name[:MESSAGE_CHARS],
            typing.cast(TestStatus, status),
            _text(e.get("message", "")),
            _number(e.get("duration")),
        )
    return list(verdicts.values())


def judge(job: Job, reply: dict[str, Any] | None) -> ExecResult:
    """The ExecResult for ``job`` from the worker's ``reply`` (None: the worker was lost)."""
    task = job.task
    if reply is None:
        return ExecResult(
            task.task_id,
            job.sample_index,
            "sandbox_error",
            message="the sandbox worker died or stopped answering",
        )
    if reply.get("worker_error"):
        return ExecResult(
            task.task_id,
            job.sample_index,
            "sandbox_error",
            message=f"the sandbox worker failed: {reply['worker_error']}",
        )
    events = reply.get("events")
    events = [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []
    kinds = {e.get("t") for e in events}
    if isinstance(task.tests, IOSuite):
        tests = _io_verdicts(task.tests, events)
    else:
        tests = _test_verdicts(events)
    expected = _expected_names(task)
    if expected is not None:
        tests = [t for t in tests if t.name in expected]  # only the task's own tests count
    complete = expected is None or len(tests) == len(expected)

    status: Status
    message = ""
    error_event = next((e for e in events if e.get("t") in ("error", "task_error")), None)
    if reply.get("violation"):
        status = "error"
        message = f"the program broke the sandbox protocol: {_text(reply['violation'])}"
    elif "syntax_error" in kinds:
        status = "syntax_error"
        message = next(str(e.get("message", "")) for e in events if e.get("t") == "syntax_error")
    elif reply.get("timed_out"):
        status, message = "timeout", "time limit exceeded"
    elif reply.get("output_exceeded"):
        status, message = "error", "output limit exceeded"
    elif error_event is not None:
        status = "error"
        prefix = "task error: " if error_event.get("t") == "task_error" else ""
        message = prefix + str(error_event.get("message", ""))
    elif "done" not in kinds:
        status = "error"
        message = f"the program exited before the tests finished (exit {reply.get('exit_code')})"
    elif tests and complete and all(t.passed for t in tests):
        status = "passed"
    else:
        status = "failed"

    if expected is not None:
        reported = {t.name for t in tests}
        fill: TestStatus = "timeout" if status == "timeout" else "not_run"
        tests += [TestVerdict(name, fill, message) for name in expected if name not in reported]
        order = {name: i for i, name in enumerate(expected)}
        tests.sort(key=lambda t: order.get(t.name, len(order)))
    elif status in ("timeout", "error"):
        # check() and pytest suites have no fixed count: the interruption is a failed test.
        tests.append(TestVerdict("<run>", "timeout" if status == "timeout" else "error", message))
    return ExecResult(
        task.task_id,
        job.sample_index,
        status,
        tests,
        stdout=_text(reply.get("stdout", ""), TAIL_CHARS),
        stderr=_text(reply.get("stderr", ""), TAIL_CHARS),
        duration=_number(reply.get("duration")),
        message=_text(message),
        judged="outside"
        if reply.get("judged_outside") or isinstance(task.tests, IOSuite)
        else "inside",
    )


def _text(value: object, limit: int = MESSAGE_CHARS) -> str:
    text = value if isinstance(value, str) else ""
    return text[:limit]


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
