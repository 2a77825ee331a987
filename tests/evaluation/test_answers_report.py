"""What a model's answers looked like, in the pass@k report (codealign.evaluation)."""

from __future__ import annotations

from codealign.evaluation import evaluation_report, format_report
from codealign.execution.records.results import ExecResult
from codealign.tasks import AssertsSuite, Task

TASK = Task("T/0", "def f():\n", "f", AssertsSuite(("assert f() == 1",)))


def test_answer_counts_and_rates_come_from_the_samples() -> None:
    results = [
        ExecResult("T/0", 0, "passed"),
        ExecResult("T/0", 1, "syntax_error"),
        ExecResult("T/0", 2, "failed"),
        ExecResult("T/0", 3, "failed"),
    ]
    records = [
        {"finish_reason": "stop", "answer": {"entry_point": "defined", "code_from": "fence"}},
        {"finish_reason": "length", "answer": {"cut_to_parse": True, "code_from": "none"}},
        {"finish_reason": "stop", "answer": {"entry_point": "other_name"}},
        {"finish_reason": "length"},  # a completion-format sample: no answer shape
    ]
    report = evaluation_report({"T/0": TASK}, results, [1], records)
    answers = report["answers"]
    assert (answers["samples"], answers["cut_at_limit"], answers["syntax_error"]) == (4, 2, 1)
    assert (answers["wrong_name"], answers["no_code"], answers["cut_to_parse"]) == (1, 1, 1)
    assert answers["rates"]["cut_at_limit"] == 0.5 and answers["rates"]["wrong_name"] == 0.25
    line = format_report(report, [1]).splitlines()[-1]
    assert line == (
        "answers: 2 cut at the token limit, 1 syntax errors, 1 with the function under "
        "another name, 1 without code"
    )
    # Samples from a file (no finish_reason): nothing to say about answers.
    plain = evaluation_report({"T/0": TASK}, results, [1], [{} for _ in results])
    assert "answers" not in plain and "answers" not in format_report(plain, [1])
