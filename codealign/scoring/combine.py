"""Signals combined into one score per sample, and rankings per prompt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from codealign.errors import InputError
from codealign.helptext import help_text
from codealign.scoring.base import Item, SignalValue
from codealign.scoring.execution import execution_signal
from codealign.scoring.lint import lint_signal, security_signal
from codealign.scoring.types import types_signal


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


Signal = Callable[[Sequence[Item]], list[SignalValue]]


def signal_functions(config: ScoringConfig) -> dict[str, Signal]:
    """The signal functions the weights switch on, looked up by name."""

    def readability(items: Sequence[Item]) -> list[SignalValue]:
        from codealign.scoring.readability import readability_signal

        models = [m.strip() for m in (config.readability_models or "").split(",") if m.strip()]
        return readability_signal(items, models, config.readability_lambda)

    table: dict[str, Signal] = {
        "execution": execution_signal,
        "lint": lambda items: lint_signal(items, config.lint_rules.split(",")),
        "types": lambda items: types_signal(items, config.types_strict),
        "readability": readability,
        "security": security_signal,
    }
    return {name: table[name] for name in config.weights()}


def score_items(items: Sequence[Item], config: ScoringConfig) -> list[dict[str, Any]]:
    """One ``{"score", "signals", "details"}`` per item: the weighted mean of the signals
    (so in [0, 1]) minus the length penalty."""
    if not items:
        raise InputError("nothing to score: the batch is empty")
    weights = config.weights()
    values = {name: fn(items) for name, fn in signal_functions(config).items()}
    total = sum(weights.values())
    out = []
    for i, item in enumerate(items):
        signals = {name: values[name][i].value for name in weights}
        score = sum(weights[n] * signals[n] for n in weights) / total
        score -= config.length_penalty * len(item.response) / 1000
        out.append(
            {
                "score": round(score, 6),
                "signals": signals,
                "details": {name: values[name][i].details for name in weights},
            }
        )
    return out


def rank(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows grouped by task, best first; ties broken by sample index (deterministic)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["task_id"]].append(row)
    for group in groups.values():
        group.sort(key=lambda r: (-r["score"], r["sample_index"]))
    return dict(groups)


def scored_rows(items: Sequence[Item], config: ScoringConfig) -> list[dict[str, Any]]:
    """Each item's sample record with its score, signals and details: the rows that
    ``rank`` and the pair builders read."""
    rows = []
    for item, extra in zip(items, score_items(items, config), strict=True):
        rows.append(
            {
                **item.sample.record,
                "sample_index": item.sample.index,
                "prompt": item.task.prompt,
                "pass_rate": item.result.pass_rate if item.result else 0.0,
                **extra,
            }
        )
    return rows
