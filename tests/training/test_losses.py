"""Loss maths, checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from codealign.training.losses import bradley_terry_loss, pairwise_accuracy


def test_bradley_terry_by_hand() -> None:
    # -log σ(2 - 0) = log(1 + e^-2)
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(
        math.log(1 + math.exp(-2))
    )
    # equal rewards: -log σ(0) = log 2
    assert bradley_terry_loss(torch.tensor([0.5]), torch.tensor([0.5])).item() == pytest.approx(
        math.log(2)
    )
    # a batch is the mean: pairs with gaps 1 and -1
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(expected)


def test_margin_asks_for_a_wider_gap() -> None:
    chosen, rejected = torch.tensor([2.0]), torch.tensor([0.0])
    # -log σ(2 - 0 - 1.5) = log(1 + e^-0.5)
    assert bradley_terry_loss(chosen, rejected, 1.5).item() == pytest.approx(
        math.log(1 + math.exp(-0.5))
    )
    per_pair = bradley_terry_loss(
        torch.tensor([2.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 2.0])
    )
    assert per_pair.item() == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2)


def test_stable_for_huge_gaps_and_has_the_right_gradient() -> None:
    chosen = torch.tensor([1000.0], requires_grad=True)
    rejected = torch.tensor([-1000.0])
    loss = bradley_terry_loss(chosen, rejected)
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() == pytest.approx(0.0) and math.isfinite(chosen.grad.item())  # type: ignore[union-attr]
    wrong = torch.tensor([-1000.0], requires_grad=True)
    bad = bradley_terry_loss(wrong, torch.tensor([1000.0]))
    assert bad.item() == pytest.approx(2000.0)
    # d/dc of -log σ(c - r) = -(1 - σ(c - r)); at c = r: -0.5
    c = torch.tensor([0.0], requires_grad=True)
    bradley_terry_loss(c, torch.tensor([0.0])).backward()  # type: ignore[no-untyped-call]
    assert c.grad.item() == pytest.approx(-0.5)  # type: ignore[union-attr]


def test_pairwise_accuracy_counts_ties_as_half() -> None:
    assert pairwise_accuracy(
        torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 2.0, 1.0])
    ) == pytest.approx(2.5 / 4)
    assert math.isnan(pairwise_accuracy(torch.tensor([]), torch.tensor([])))


def test_weighted_bradley_terry_is_the_weighted_mean() -> None:
    """Gaps 0 and ln 3: losses ln 2 and ln(4/3). Weights 1 and 3 give
    (ln 2 + 3 ln(4/3)) / 4; equal weights give the plain mean."""
    chosen, rejected = torch.tensor([0.0, math.log(3)]), torch.tensor([0.0, 0.0])
    weighted = bradley_terry_loss(chosen, rejected, weight=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx((math.log(2) + 3 * math.log(4 / 3)) / 4)
    same = bradley_terry_loss(chosen, rejected, weight=torch.tensor([2.0, 2.0]))
    assert same.item() == pytest.approx(bradley_terry_loss(chosen, rejected).item())
