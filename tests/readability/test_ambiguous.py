"""Which readability pairs go to people: the ensemble's preference worked out by hand,
the most uncertain first, within a budget and a cap per task; only distinct programs
that pass every test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from codealign.errors import InputError
from codealign.readability.ambiguous import (
    Candidate,
    budgeted,
    correct_samples,
    preference,
    rank,
)
from codealign.tasks import AssertsSuite, Task


def test_preference_is_bradley_terry_on_the_rewards_behind_the_scores() -> None:
    """Scores σ(r - c): 0.75 and 0.5 are rewards c + ln 3 and c, so a is preferred with
    σ(ln 3) = 3/4; equal scores give 1/2; each model on its own."""
    assert preference([0.75, 0.5], [0.5, 0.5]) == pytest.approx([0.75, 0.5])
    assert preference([0.9], [0.1]) == pytest.approx([1 / (1 + math.exp(-2 * math.log(9)))])


def candidate(task: str, n: int) -> Candidate:
    return Candidate(task, "p", f"r{n}", f"program {n}")


def test_disagreement_first_then_closeness_to_a_coin_flip() -> None:
    cands = [candidate("t1", 0), candidate("t1", 1), candidate("t2", 2), candidate("t2", 3),
             candidate("t3", 4), candidate("t3", 5)]  # fmt: skip
    scores = [
        (0.9, 0.1), (0.1, 0.9),  # t1: the two models disagree completely
        (0.6, 0.6), (0.5, 0.5),  # t2: they agree, a little better than a coin flip
        (0.5, 0.5), (0.5, 0.5),  # t3: they agree exactly on a coin flip
    ]  # fmt: skip
    ranked = rank(cands, scores)
    assert [q.a.task_id for q in ranked] == ["t1", "t3", "t2"]
    assert ranked[0].spread > 0.4 and ranked[0].preference == pytest.approx(0.5)
    assert ranked[1].spread == 0 and ranked[1].preference == pytest.approx(0.5)


def test_the_budget_is_a_count_or_a_share_with_a_cap_per_task() -> None:
    cands = [candidate("t1", i) for i in range(4)] + [candidate("t2", i) for i in range(4, 6)]
    ranked = rank(cands, [(0.5,)] * 6)  # 6 pairs of t1, 1 of t2, all at 0.5
    assert len(ranked) == 7
    assert [q.a.task_id for q in budgeted(ranked, 3, per_task=2)].count("t1") == 2
    assert len(budgeted(ranked, 0.5, per_task=10)) == 4  # ceil(0.5 * 7)
    with pytest.raises(InputError, match="budget"):
        budgeted(ranked, 0, per_task=2)


def test_only_distinct_programs_that_pass_every_test(tmp_path: Path) -> None:
    task = Task("t/1", "def f():\n", "f", AssertsSuite(("assert f() == 1",)))
    rows = [
        {"task_id": "t/1", "completion": "    return 1\n", "status": "passed"},
        {"task_id": "t/1", "completion": "    return 1   \n", "status": "passed"},  # same
        {"task_id": "t/1", "completion": "    return 2\n", "status": "failed"},
        {"task_id": "t/1", "completion": "    x = 1\n    return x\n", "status": "passed"},
    ]
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(
        json.dumps({**r, "details": {"execution": {"status": r.pop("status")}}}) + "\n"
        for r in rows))  # fmt: skip
    found = correct_samples(scored, {"t/1": task})
    assert [c.response for c in found] == ["    return 1\n", "    x = 1\n    return x\n"]
    assert found[0].program == "def f():\n    return 1\n"
    with pytest.raises(InputError, match="not in the run's tasks"):
        correct_samples(scored, {})
