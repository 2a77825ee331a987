"""Loss functions as pure tensor maths: no models, no state, easy to check by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Mean of -log σ(r_chosen - r_rejected - margin) over the batch.

    The Bradley-Terry model says P(chosen ≻ rejected) = σ(r_c - r_r). An optional margin
    (per pair, e.g. how strongly the chosen side is preferred) asks for a wider gap, as in
    Llama 2's reward model. ``logsigmoid`` keeps large gaps numerically stable.
    """
    gap = chosen - rejected
    if margin is not None:
        gap = gap - margin
    return -F.logsigmoid(gap).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen side has the higher reward (ties count as half)."""
    if chosen.numel() == 0:
        return float("nan")
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    return float(wins.mean())
