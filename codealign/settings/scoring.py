"""Scoring settings (the ``scoring`` section): signal weights and how pairs are made."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from codealign.errors import InputError
from codealign.settings.helptext import help_text


@dataclass
class ScoringConfig:
    execution_weight: float = field(default=3.0, metadata=help_text("Weight of the pass rate."))
    lint_weight: float = field(default=1.0, metadata=help_text("Weight of ruff cleanliness."))
    types_weight: float = field(default=1.0, metadata=help_text("Weight of mypy cleanliness."))
    readability_weight: float = field(
        default=1.0,
        metadata=help_text("Weight of the readability reward model's (conservative) score."),
    )
    security_weight: float = field(
        default=0.0,
        metadata=help_text("Weight of ruff's bandit rules (S); 0 turns the signal off."),
    )
    lint_rules: str = field(
        default="F,E,W,B,SIM", metadata=help_text("ruff rule prefixes for the lint signal.")
    )
    types_strict: bool = field(default=False, metadata=help_text("Run mypy with --strict."))
    readability_models: str | None = field(
        default=None,
        metadata=help_text(
            "Comma-separated reward model directories (an ensemble); default: the built-in one."
        ),
    )
    readability_lambda: float = field(
        default=1.0,
        metadata=help_text("Conservative readability: mean - lambda x std over the ensemble."),
    )
    length_penalty: float = field(
        default=0.0, metadata=help_text("Score subtracted per 1,000 characters of response.")
    )
    pair_strategy: Literal["execution-gated", "best-vs-worst", "margin"] = field(
        default="execution-gated",
        metadata=help_text(
            "execution-gated: chosen passes at least gate_threshold of its tests, rejected "
            "passes fewer by gate_margin; best-vs-worst: top vs bottom score per prompt; "
            "margin: every pair whose scores differ by pair_margin or more."
        ),
    )
    gate_threshold: float = field(
        default=1.0, metadata=help_text("execution-gated: the pass rate a chosen sample needs.")
    )
    gate_margin: float = field(
        default=0.01,
        metadata=help_text(
            "execution-gated: how much lower the rejected sample's pass rate must be."
        ),
    )
    pair_margin: float = field(
        default=0.1,
        metadata=help_text("margin strategy: the smallest score difference that makes a pair."),
    )
    pairs_per_prompt: int = field(
        default=1,
        metadata=help_text(
            "execution-gated and best-vs-worst: up to this many disjoint pairs per prompt, "
            "the best remaining sample against the worst remaining one (margin: no limit)."
        ),
    )

    def __post_init__(self) -> None:
        if self.pairs_per_prompt < 1:
            raise ValueError("pairs_per_prompt must be at least 1")

    def weights(self) -> dict[str, float]:
        weights = {
            "execution": self.execution_weight,
            "lint": self.lint_weight,
            "types": self.types_weight,
            "readability": self.readability_weight,
            "security": self.security_weight,
        }
        if any(w < 0 for w in weights.values()) or not any(weights.values()):
            raise InputError("signal weights must be >= 0 and not all 0")
        return {name: w for name, w in weights.items() if w > 0}
