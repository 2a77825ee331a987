"""The shared optimisation steps, and gradient accumulation worked out by hand."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import pytest
import torch

from codealign.settings.preference import PreferenceConfig
from codealign.training import dpo
from codealign.training.steps import (
    StepLog,
    accumulate,
    batched,
    epoch_order,
    last_quarter,
    mean_of,
    optimizer_step,
    warmup_cosine,
)


def test_warmup_then_cosine_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(()))], lr=1.0)
    schedule = warmup_cosine(optimizer, total_steps=10, warmup_ratio=0.2)  # 2 warmup steps
    lrs = []
    for _ in range(10):
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    expected = [1 / 3, 2 / 3] + [0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)]
    assert lrs == pytest.approx(expected)


def test_epoch_order_is_seeded_per_epoch() -> None:
    items = list(range(20))
    first, again = epoch_order(items, seed=3, epoch=0), epoch_order(items, seed=3, epoch=0)
    assert first == again and sorted(first) == items
    assert epoch_order(items, seed=3, epoch=1) != first
    expected = list(items)
    random.Random(3 * 7919 + 1).shuffle(expected)  # the order earlier runs were trained in
    assert epoch_order(items, seed=3, epoch=1) == expected


def test_batches_and_step_log_summaries() -> None:
    assert batched([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    rows: list[StepLog] = [{"loss": 4.0}, {"loss": float("nan")}, {"other": 1.0}, {"loss": 2.0}]
    assert mean_of(rows, "loss") == 3.0  # NaN and rows without the key left out
    assert mean_of(rows, "missing") is None
    assert list(last_quarter(rows)) == rows[-1:]
    assert list(last_quarter(rows * 2)) == (rows * 2)[-2:]


def test_optimizer_step_clips_steps_and_clears() -> None:
    w = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([w], lr=1.0)
    (w * torch.tensor([3.0, 4.0])).sum().backward()  # type: ignore[no-untyped-call]
    norm = optimizer_step(optimizer, [w], max_grad_norm=1.0)
    assert norm == pytest.approx(5.0)
    assert w.tolist() == pytest.approx([-0.6, -0.8])  # the gradient clipped to norm 1
    assert w.grad is None


def test_the_batches_of_a_short_group_weigh_one_in_all() -> None:
    """A recorded-loss fake: every batch's loss is the same parameter s, so s.grad is the
    sum of the batches' weights. A full group of 2 + 2 records and a short last one of
    2 + 1 both sum to 1 (the old scaling, records / (batch_size · grad_accum), gave the
    short group 3/4)."""
    s = torch.nn.Parameter(torch.zeros(()))

    def batch_loss(batch: Sequence[int]) -> tuple[torch.Tensor, StepLog]:
        return s * 1.0, {"loss": 0.0}

    for group, weights in (([[0, 1], [2, 3]], [0.5, 0.5]), ([[4, 5], [6]], [2 / 3, 1 / 3])):
        s.grad = None
        accumulate(group, batch_loss)
        assert float(s.grad) == pytest.approx(sum(weights)) == pytest.approx(1.0)  # type: ignore[arg-type]


def test_every_preference_step_is_the_mean_over_the_records_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Worked out by hand on a linear model: record i's loss is w · x_i, so its gradient
    is x_i, and each optimiser step must see the mean x over the records of its group.
    5 records in batches of 2, accumulated 2 at a time: per epoch, one group of 4 records
    and a last, short one of 1, which must get x_i itself, not x_i / 4."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    w = torch.nn.Parameter(torch.zeros(()))
    batches: list[list[int]] = []
    grads: list[float] = []

    def batch_loss(batch: Sequence[int]) -> tuple[torch.Tensor, StepLog]:
        batches.append(list(batch))
        loss = (w * x[list(batch)]).mean()
        return loss, {"loss": loss.item()}

    def record_step(
        optimizer: torch.optim.Optimizer,
        params: Sequence[torch.nn.Parameter],
        max_grad_norm: float,
        schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> float:
        assert params[0].grad is not None
        grads.append(float(params[0].grad))
        optimizer.zero_grad(set_to_none=True)
        return 0.0

    monkeypatch.setattr(dpo, "optimizer_step", record_step)
    config = PreferenceConfig(batch_size=2, grad_accum=2, epochs=2)
    log = dpo.train_steps(5, config, batch_loss, [w], "test", progress=False)
    assert [len(b) for b in batches] == [2, 2, 1] * 2
    held = [batches[0] + batches[1], batches[2], batches[3] + batches[4], batches[5]]
    assert [len(h) for h in held] == [4, 1, 4, 1]
    assert grads == pytest.approx([float(x[h].mean()) for h in held])
    assert len(log) == 4 and [row["step"] for row in log] == [1, 2, 3, 4]
