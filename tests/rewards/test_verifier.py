"""The verifier every reward goes through: task ids as datasets give them, tasks given
twice, and the record a verl row carries (a task as native JSON, and back)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from codealign.errors import InputError
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult
from codealign.execution.records.results import TestVerdict as Verdict
from codealign.prompting import answer_fields, cut_at_stops
from codealign.rewards.verifier import Answer, UnknownTask, Verifier
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import AssertsSuite, Task, load_tasks
from codealign.tasks.native import from_native, to_native

SUITES = Path(__file__).parent.parent / "data" / "suites"


def task(task_id: str, prompt: str = "def f():\n") -> Task:
    return Task(task_id, prompt, "f", AssertsSuite(("assert f() == 1",)))


def test_a_datasets_own_id_names_its_task_when_unambiguous() -> None:
    verifier = Verifier([task("Mbpp/901"), task("Mbpp/902"), task("A/7"), task("B/7")])
    assert verifier.resolve("Mbpp/901").task_id == "Mbpp/901"
    assert verifier.resolve(901).task_id == "Mbpp/901"  # MBPP's integer id
    assert verifier.resolve("902").task_id == "Mbpp/902"
    with pytest.raises(UnknownTask, match="names 2 tasks"):
        verifier.resolve(7)
    with pytest.raises(UnknownTask, match="is not a task"):
        verifier.resolve("903")
    with pytest.raises(UnknownTask):
        verifier.resolve(True)
    verifier.add([task("Mbpp/901")])  # the same task again: fine
    with pytest.raises(InputError, match="given twice, differently"):
        verifier.add([task("Mbpp/901", prompt="def g():\n")])


def test_every_suite_kind_survives_the_native_record() -> None:
    tasks = [*load_tasks("humaneval")[:5], *load_tasks("tiny-heldout")[:5],
             *load_tasks(SUITES)]  # fmt: skip
    kinds = {type(t.tests).__name__ for t in tasks}
    assert {"CheckSuite", "AssertsSuite", "PytestSuite"} <= kinds
    for t in tasks:
        assert from_native(to_native(t)) == t


def test_what_an_answer_contributes() -> None:
    code = task("t", "def f():\n")
    assert cut_at_stops("    return 1\n\nprint(f())", ("\nprint",)) == "    return 1\n"
    assert answer_fields(code, "    return 1\ndef g(): pass", chat=False, stop=("\ndef",)) == {
        "completion": "    return 1"
    }
    fenced = "Here:\n```python\ndef f():\n    return 1\n```"
    assert answer_fields(code, fenced, chat=True)["solution"] == "def f():\n    return 1\n"
    body = "```python\n    return 1\n```"  # a body alone continues the prompt
    assert answer_fields(code, body, chat=True)["solution"] == "def f():\n    return 1\n"


class Passing:
    """An executor under which every program passes its one test (no sandbox needed)."""

    name = "passing"

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]:
        for job in jobs:
            yield ExecResult(job.task.task_id, job.sample_index, "passed",
                             [Verdict("test_list[0]", "passed")])  # fmt: skip

    def close(self) -> None:
        pass

    def __enter__(self) -> Passing:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_answers_that_break_parsers_cost_only_their_own_scores() -> None:
    """A batch scored through verify(score=True): an overlong sum, too deep parentheses
    and brackets score 0 on lint and types alone (their execution verdict kept); the
    honest answer beside them keeps its full score."""
    honest = "def f() -> int:\n    return 1\n"
    breaking = ["x = 1" + "+1" * 100_000 + "\n", "x = " + "(" * 1000 + "1" + ")" * 1000 + "\n",
                "x = " + "[" * 500 + "]" * 500 + "\n"]  # fmt: skip
    verifier = Verifier([task("t")], scoring=ScoringConfig(readability_weight=0.0))
    verifier._holder[0] = Passing()
    verdicts = verifier.verify([Answer("t", solution=p) for p in [honest, *breaking]], score=True)
    assert verdicts[0].score == 1.0
    for v in verdicts[1:]:
        assert v.signals == {"execution": 1.0, "lint": 0.0, "types": 0.0}
        assert v.score == pytest.approx(3 / 5)  # execution weighs 3 of 5
