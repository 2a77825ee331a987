"""The paired bootstrap of a change in pass@k (codealign.evaluation.paired), by hand."""

from __future__ import annotations

import pytest

from codealign.evaluation.paired import paired_bootstrap, per_task_pass_at_k


def test_three_tasks_by_hand() -> None:
    # Per-task changes: a +1, b 0, c +1; mean 2/3.
    before = {"a": (1, 0), "b": (1, 1), "c": (1, 0)}
    after = {"a": (1, 1), "b": (1, 1), "c": (1, 1)}
    change = paired_bootstrap(before, after, resamples=20_000)
    assert change.before == pytest.approx(1 / 3) and change.after == 1.0
    assert change.change == pytest.approx(2 / 3)
    # A resample of three tasks has mean 0, 1/3, 2/3 or 1. All three picks are b with
    # probability 1/27 (3.7% > 2.5%): the low end is 0. None is b with probability 8/27
    # (29.6%): the high end is 1.
    assert (change.low, change.high) == (0.0, 1.0)
    assert not change.excludes_zero and change.tasks == 3


def test_a_change_every_task_shares_has_no_spread() -> None:
    before = {t: (4, 1) for t in "abcdef"}  # pass@1 = 1/4 each
    after = {t: (4, 3) for t in "abcdef"}  # 3/4 each: +1/2 everywhere
    change = paired_bootstrap(before, after)
    assert change.change == pytest.approx(0.5)
    assert change.low == pytest.approx(0.5) and change.high == pytest.approx(0.5)
    assert change.excludes_zero


def test_pairing_removes_the_spread_between_tasks() -> None:
    """Easy and hard tasks, each up by a little: paired, the interval stays above zero."""
    before = {f"t{i}": (10, i) for i in range(10)}  # pass@1 0.0 .. 0.9
    after = {f"t{i}": (10, i + 1) for i in range(10)}  # each +0.1
    change = paired_bootstrap(before, after)
    assert change.low == pytest.approx(0.1) and change.excludes_zero


def test_pass_at_k_per_task_and_what_is_left_out() -> None:
    # n=4, c=2: pass@1 = 1/2; pass@2 = 1 - C(2,2)/C(4,2) = 1 - 1/6.
    assert per_task_pass_at_k({"a": (4, 2), "b": (1, 1)}, 2) == {"a": pytest.approx(5 / 6)}
    change = paired_bootstrap({"a": (4, 2), "b": (4, 0)}, {"a": (4, 4), "c": (4, 4)}, 1)
    assert change.tasks == 1 and change.change == pytest.approx(0.5)  # only a is shared
    with pytest.raises(ValueError, match="no task has at least 2 samples"):
        paired_bootstrap({"a": (1, 1)}, {"a": (1, 0)}, 2)
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap({"a": (1, 1)}, {"a": (1, 0)}, confidence=1.0)


def test_the_same_inputs_give_the_same_interval() -> None:
    before = {f"t{i}": (4, i % 3) for i in range(30)}
    after = {f"t{i}": (4, (i * 7) % 5 % 4) for i in range(30)}
    assert paired_bootstrap(before, after) == paired_bootstrap(before, after)
