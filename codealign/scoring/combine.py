"""Signals combined into one score per sample, and rankings per prompt."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from codealign.errors import InputError
from codealign.scoring import readability
from codealign.scoring.base import Item, SignalValue
from codealign.scoring.execution import execution_signal
from codealign.scoring.lint import lint_signal, security_signal
from codealign.scoring.types import types_signal
from codealign.settings.scoring import ScoringConfig

Signal = Callable[[Sequence[Item]], list[SignalValue]]

#: What a program can make a signal raise (too deep a nesting, too long an expression,
#: text a parser refuses); anything else (a missing model, a bad setting) is the
#: signal's own failure and stops the batch.
PROGRAM_ERRORS = (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError)


def signal_functions(config: ScoringConfig) -> dict[str, Signal]:
    """The signal functions the weights switch on, looked up by name."""

    def readability_of(items: Sequence[Item]) -> list[SignalValue]:
        models = [m.strip() for m in (config.readability_models or "").split(",") if m.strip()]
        return readability.readability_signal(items, models, config.readability_lambda)

    table: dict[str, Signal] = {
        "execution": execution_signal,
        "lint": lambda items: lint_signal(items, config.lint_rules.split(",")),
        "types": lambda items: types_signal(items, config.types_strict),
        "readability": readability_of,
        "security": security_signal,
    }
    return {name: table[name] for name in config.weights()}


def _isolated(fn: Signal, items: Sequence[Item]) -> list[SignalValue]:
    """``fn`` over ``items``; where a program makes it raise, the batch is halved until that
    program is alone, and it alone gets the signal's worst value and the reason."""
    try:
        return fn(items)
    except PROGRAM_ERRORS as exc:
        if len(items) == 1:
            return [SignalValue(0.0, {"signal_error": f"{type(exc).__name__}: {exc}"[:300]})]
        half = len(items) // 2
        return _isolated(fn, items[:half]) + _isolated(fn, items[half:])


def score_items(items: Sequence[Item], config: ScoringConfig) -> list[dict[str, Any]]:
    """One ``{"score", "signals", "details"}`` per item: the weighted mean of the signals
    (so in [0, 1]) minus the length penalty."""
    if not items:
        raise InputError("nothing to score: the batch is empty")
    weights = config.weights()
    values = {name: _isolated(fn, items) for name, fn in signal_functions(config).items()}
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
