"""pytest suites judged outside: the tests run in the judge's process, the candidate's
module is a proxy, and fixtures that hand the candidate files keep working."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codealign.execution import ExecResult, Job, make_executor
from codealign.execution.executor import Executor
from codealign.tasks import PytestSuite, Task
from tests.execution.conftest import ConfigFor

TESTS = """\
import json
import pathlib

import pytest
from solution import Stack, parse, total, write_report

HERE = pathlib.Path(__file__).parent


def test_objects_stay_in_the_sandbox():
    s = Stack()
    s.push(3)
    s.push(4)
    assert len(s) == 2 and s.peek() == 4 and s.items == [3, 4]
    assert list(s) == [3, 4] and 4 in s and s[0] == 3
    assert s.pop() == 4 and len(s) == 1
    s.name = "mine"
    assert s.name == "mine"


def test_exceptions_arrive_as_builtins():
    with pytest.raises(ValueError, match="empty"):
        Stack().pop()


def test_tmp_path_both_ways(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("1 2 3")
    assert total(source) == 6
    out = tmp_path / "out" / "report.txt"
    write_report(out, 6)
    assert out.read_text() == "total: 6"


def test_data_next_to_the_tests():
    assert parse(HERE / "data" / "cases.txt") == [1, 2]


def test_expected_values_stay_here():
    expected = json.loads((HERE / "data" / "expected.json").read_text())
    assert total_of(expected["input"]) == expected["sum"]


def total_of(values):
    return sum(values)
"""
SUITE = Task(
    "outside",
    "",
    "Stack",
    PytestSuite(
        (
            ("data/cases.txt", "1\n2\n"),
            ("data/expected.json", '{"input": [1, 2], "sum": 3}'),
            ("test_outside.py", TESTS),
        )
    ),
    prompt_style="text",
)
HONEST = """\
class Stack:
    def __init__(self):
        self.items = []

    def push(self, value):
        self.items.append(value)

    def pop(self):
        if not self.items:
            raise ValueError("empty stack")
        return self.items.pop()

    def peek(self):
        return self.items[-1]

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __getitem__(self, i):
        return self.items[i]


def parse(path):
    return [int(line) for line in open(path)]


def total(path):
    return sum(int(x) for x in open(path).read().split())


def write_report(path, value):
    import os
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(f"total: {value}")
"""
#: Reads the data file it was never handed: it is not there.
PEEKS = (
    HONEST
    + """

import glob
def parse(path):
    return [1, 2] if glob.glob("/tmp/**/expected.json", recursive=True) else []
"""
)


@pytest.fixture(scope="module")
def executor(sandbox_config: ConfigFor) -> Iterator[Executor]:
    with make_executor(sandbox_config(workers=2)) as ex:
        yield ex


def run(executor: Executor, *programs: str) -> list[ExecResult]:
    results = executor.run(Job(i, SUITE, program) for i, program in enumerate(programs))
    return sorted(results, key=lambda r: r.sample_index)


def test_a_suite_judged_outside(executor: Executor) -> None:
    honest, peeks, broken = run(executor, HONEST, PEEKS, "raise SystemExit(0)\n")
    assert honest.passed, [(t.name, t.message) for t in honest.tests]
    assert honest.judged_outside == 5
    by_name = {t.name.split("::")[-1]: t for t in peeks.tests}
    assert by_name["test_data_next_to_the_tests"].status == "failed"
    assert not peeks.passed and by_name["test_tmp_path_both_ways"].passed
    # A candidate that dies while loading still has every collected test counted.
    assert not broken.passed and broken.judged == "outside"
