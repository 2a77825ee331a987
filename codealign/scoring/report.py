"""A per-signal report: distributions, correlations, and what each pair strategy made."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from codealign.scoring.pairs import STRATEGIES, make_pairs
from codealign.settings.scoring import ScoringConfig


def _distribution(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1) + 0.5))]

    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.pstdev(values), 4),
        "min": ordered[0],
        "p25": q(0.25),
        "median": q(0.5),
        "p75": q(0.75),
        "max": ordered[-1],
    }


def _pearson(a: list[float], b: list[float]) -> float | None:
    if len(a) < 2 or statistics.pstdev(a) == 0 or statistics.pstdev(b) == 0:
        return None  # undefined for a constant signal
    return round(statistics.correlation(a, b), 4)


def signal_report(rows: Sequence[dict[str, Any]], config: ScoringConfig) -> dict[str, Any]:
    names = sorted({name for row in rows for name in row["signals"]})
    columns = {n: [float(r["signals"][n]) for r in rows if n in r["signals"]] for n in names}
    scores = [float(r["score"]) for r in rows]
    strategies = {}
    for strategy in STRATEGIES:
        pairs, dropped = make_pairs(rows, config, strategy)
        strategies[strategy] = {"pairs": len(pairs), "dropped_prompts": dict(dropped)}
    return {
        "samples": len(rows),
        "prompts": len({r["task_id"] for r in rows}),
        "score": _distribution(scores),
        "signals": {n: _distribution(v) for n, v in columns.items() if v},
        "correlations": {
            f"{a}~{b}": _pearson(columns[a], columns[b])
            for i, a in enumerate(names)
            for b in names[i + 1 :]
            if len(columns[a]) == len(columns[b])
        },
        "strategies": strategies,
    }
