"""The readability signal: reward models scored in batches, alone or as an ensemble.

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
from typing import Any

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


def readability_signal(
    items: Sequence[Any], models: Sequence[str | Path] = (), lam: float = 1.0
) -> list[Any]:
    """The readability signal for scoring items: the ensemble's conservative score on
    (task prompt, response); a program that does not parse scores 0."""
    from codealign.scoring.base import SignalValue

    for path in models:
        if not Path(path, "reward_model.json").exists():
            raise InputError(f"no readability model (reward_model.json) in {path}")
    out = [SignalValue(0.0, {"parse_error": True}) for _ in items]
    parseable = [i for i, item in enumerate(items) if item.parses]
    if parseable:
        scorer = ReadabilityScorer(models, lam=lam, device="cpu")
        scores = scorer.score(
            [items[i].task.prompt for i in parseable], [items[i].response for i in parseable]
        )
        for i, s in zip(parseable, scores, strict=True):
            out[i] = SignalValue(s.conservative, {"mean": round(s.mean, 6), "std": round(s.std, 6)})
    return out
