"""Readability reward models scored in batches, alone or as an ensemble.

A score is σ(reward - center): under the Bradley-Terry model, the probability that a
reviewer prefers this response to a typical one (``center`` is the median reward of the
held-out responses seen at training time). 0.5 is typical, near 1 clearly more readable.
An ensemble of K models gives the mean and spread of their scores and a conservative
score, mean - λ·std (clipped to [0, 1]): where the models disagree, a response the policy
found a way to please one of them gets less credit, which blunts reward hacking.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codealign.errors import InputError
from codealign.models.reward import RewardModel
from codealign.readability.default_model import ensure_default_readability_model


@dataclass(frozen=True)
class ReadabilityScore:
    mean: float
    std: float
    conservative: float
    per_model: tuple[float, ...]


class ReadabilityScorer:
    """Scores (prompt, response) pairs with one or more readability reward models."""

    def __init__(
        self, models: Sequence[str | Path] = (), *, lam: float = 1.0, device: str = "auto"
    ) -> None:
        paths = list(models) or [ensure_default_readability_model()]
        self.models = [RewardModel.load(p, device=device) for p in paths]
        self.lam = lam

    def score(
        self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32
    ) -> list[ReadabilityScore]:
        if len(prompts) != len(responses):
            raise InputError("prompts and responses must pair up one to one")
        if not prompts:
            return []
        per_model = [m.score(prompts, responses, batch_size) for m in self.models]
        out = []
        for scores in zip(*per_model, strict=True):
            mean = statistics.fmean(scores)
            std = statistics.pstdev(scores) if len(scores) > 1 else 0.0
            out.append(
                ReadabilityScore(
                    mean, std, min(1.0, max(0.0, mean - self.lam * std)), tuple(scores)
                )
            )
        return out
