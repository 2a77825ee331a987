"""The readability signal: the readability reward models' conservative ensemble score on
(task prompt, response). The models are ``codealign.readability``'s; the signal, like
every signal, is scoring's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codealign.errors import InputError
from codealign.scoring.base import Item, SignalValue


def readability_signal(
    items: Sequence[Item], models: Sequence[str | Path] = (), lam: float = 1.0
) -> list[SignalValue]:
    """σ(reward - center) of each response, as the ensemble's mean - λ·std (the built-in
    model when ``models`` is empty); a program that does not parse scores 0."""
    for path in models:
        if not Path(path, "reward_model.json").exists():
            raise InputError(f"no readability model (reward_model.json) in {path}")
    out = [SignalValue(0.0, {"parse_error": True}) for _ in items]
    parseable = [i for i, item in enumerate(items) if item.parses]
    if parseable:
        # Loaded here: scoring with the readability weight at 0 never imports torch.
        from codealign.readability.scorer import ReadabilityScorer

        scorer = ReadabilityScorer(models, lam=lam, device="cpu")
        scores = scorer.score(
            [items[i].task.prompt for i in parseable], [items[i].response for i in parseable]
        )
        for i, s in zip(parseable, scores, strict=True):
            out[i] = SignalValue(s.conservative, {"mean": round(s.mean, 6), "std": round(s.std, 6)})
    return out
