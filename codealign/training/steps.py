"""What every training recipe's optimisation loop repeats, written once.

The warmup + cosine learning-rate schedule, the seeded order of each epoch, batching,
the optimiser step (clip, step, schedule, zero), the progress bars, and the summaries of
the step log. Nothing here knows about models or losses.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from tqdm import tqdm

if TYPE_CHECKING:
    from codealign.training.distributed import Ranks

T = TypeVar("T")

#: A step-log row: what one optimiser step reports (written to train_log.jsonl).
StepLog = dict[str, float]
#: The loss of the records at some indices (a mean over them), and what to log about it.
BatchLoss = Callable[[Sequence[int]], tuple[torch.Tensor, StepLog]]


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over the first ``warmup_ratio`` of ``total_steps``, then a cosine
    decay to 0 at the last step."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def epoch_order(items: Iterable[int], seed: int, epoch: int) -> list[int]:
    """``items`` shuffled for ``epoch``: a fresh order every epoch, the same on every rerun
    (7919, a prime, keeps the seeds of nearby runs' epochs apart)."""
    order = list(items)
    random.Random(seed * 7919 + epoch).shuffle(order)
    return order


def batched(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive slices of ``size`` items; the last may hold fewer."""
    return [list(items[s : s + size]) for s in range(0, len(items), size)]


def accumulate(
    group: Sequence[Sequence[int]], batch_loss: BatchLoss, ranks: Ranks | None = None
) -> list[StepLog]:
    """Backward the loss of every batch of one accumulation group (a list of batches of
    record indices) and return the batches' logs.

    Each batch's loss, a mean over its records, is weighted by its share of the records
    the group holds, so the step's gradient is the mean over exactly those records. A
    short last group of an epoch counts as much per record as a full one; weighting by
    the share of a *full* group would shrink its step in proportion.

    Data parallel (``ranks``), the batches are global: this process takes its shard,
    weighted by the shard's share times the number of processes, since the gradients are
    then averaged over them (``Ranks.average_gradients``). An empty shard backwards one
    record with weight 0, so every process computes the same kind of step.
    """
    held = sum(len(batch) for batch in group)
    world = ranks.world if ranks is not None else 1
    logs = []
    for batch in group:
        mine = ranks.shard(batch) if ranks is not None else list(batch)
        loss, log = batch_loss(mine or list(batch[:1]))
        (loss * len(mine) * world / held).backward()  # type: ignore[no-untyped-call]
        logs.append(log)
    return logs


def clip_gradients(params: Sequence[torch.nn.Parameter], max_norm: float) -> float:
    """Scale the gradients to a total L2 norm of at most ``max_norm``; returns the norm
    before. Gradients FSDP holds as shards (DTensors) count whole, beside plain ones
    (PPO's value head), which torch's ``clip_grad_norm_`` cannot mix."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not any(isinstance(g, DTensor) for g in grads):
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    squares = 0.0
    for g in grads:
        norm = torch.linalg.vector_norm(g.detach().float())
        squares += float(norm.full_tensor() if isinstance(norm, DTensor) else norm) ** 2
    total = math.sqrt(squares)
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:  # torch's rule: clip only above the limit
        for g in grads:
            g.detach().mul_(scale)
    return total


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.nn.Parameter],
    max_grad_norm: float,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """Apply the accumulated gradients: clip their norm, step (and the schedule), and
    clear them. Returns the norm before clipping, the first sign of a diverging run."""
    norm = clip_gradients(params, max_grad_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def step_bar(total: int, desc: str, enabled: bool) -> tqdm[Any]:
    """The progress bar of a recipe's optimiser steps."""
    return tqdm(total=total, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True)


def batch_progress(items: Iterable[T], desc: str, enabled: bool) -> Iterable[T]:
    """``items`` (one per forward pass) with a progress bar, for the no-grad passes."""
    return tqdm(items, desc=desc, unit="batch", disable=not enabled, dynamic_ncols=True)


def mean_of(rows: Sequence[StepLog], key: str) -> float | None:
    """The mean of ``key`` over the step-log rows that have it (NaN left out)."""
    values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return sum(values) / len(values) if values else None


def last_quarter(log: Sequence[StepLog]) -> Sequence[StepLog]:
    """The last quarter of the steps (at least one): where a run's end state is read."""
    return log[-max(1, len(log) // 4) :]
