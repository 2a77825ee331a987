"""Rankings into preference pairs (and unpaired labels for KTO).

Every strategy keeps one rule: the chosen side never passes fewer tests than the rejected
side; a pretty failure never beats an ugly success.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.jsonl import read_jsonl
from codealign.scoring.combine import rank
from codealign.settings.scoring import ScoringConfig

STRATEGIES = ("execution-gated", "best-vs-worst", "margin")
#: What every scored sample carries (``codealign score`` writes them).
SCORED_FIELDS = ("task_id", "sample_index", "score", "signals")


def load_scored(path: str | Path) -> list[dict[str, Any]]:
    """Scored samples from a ``codealign score`` file, each checked for its fields."""
    rows = []
    for line, record in read_jsonl(path):
        missing = [k for k in SCORED_FIELDS if k not in record]
        if missing:
            raise InputError(
                f"not a scored sample: missing {', '.join(missing)} (make it with "
                "'codealign score')",
                path=path,
                line=line,
            )
        rows.append(record)
    if not rows:
        raise InputError("no scored samples", path=path)
    return rows


def _pass_rate(row: dict[str, Any]) -> float:
    return float(row["signals"].get("execution", row.get("pass_rate", 0.0)))


def _response(row: dict[str, Any]) -> str:
    return str(row["completion"] if row.get("completion") is not None else row.get("solution"))


def _dedupe(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Identical responses collapse into their best-ranked copy."""
    seen: set[str] = set()
    out = []
    for row in group:
        key = _response(row).strip()
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _candidates(
    group: list[dict[str, Any]], config: ScoringConfig, strategy: str
) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], str | None]:
    """Pairs for one prompt (best first), or why there are none."""
    if len(group) < 2:
        return [], "single distinct sample"
    if group[0]["score"] == group[-1]["score"]:
        return [], "all samples tie"
    k = min(config.pairs_per_prompt, len(group) // 2)
    if strategy == "best-vs-worst":
        pairs = list(zip(group[:k], reversed(group[-k:]), strict=True))
        pairs = [(a, b) for a, b in pairs if a["score"] > b["score"]]
    elif strategy == "margin":
        pairs = [
            (a, b)
            for i, a in enumerate(group)
            for b in group[i + 1 :]
            if a["score"] - b["score"] >= config.pair_margin
        ]
        if not pairs:
            return [], "no score gap reaches the margin"
    else:
        passing = [r for r in group if _pass_rate(r) >= config.gate_threshold]
        if not passing:
            return [], "no sample passes the gate"
        failing = [r for r in group if _pass_rate(r) <= _pass_rate(passing[0]) - config.gate_margin]
        if not failing:
            return [], "every sample passes the gate"
        # The best passing samples against the worst failing ones, each used once.
        pairs = [
            (a, b)
            for a, b in zip(passing[:k], reversed(failing[-k:]), strict=False)
            if _pass_rate(b) <= _pass_rate(a) - config.gate_margin
        ]
    pairs = [(a, b) for a, b in pairs if _pass_rate(a) >= _pass_rate(b) and a["score"] > b["score"]]
    return (pairs, None) if pairs else ([], "no pair where the better sample passes as much")


def _record(chosen: dict[str, Any], rejected: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task_id": chosen["task_id"],
        "prompt": chosen.get("prompt", ""),
        "chosen": _response(chosen),
        "rejected": _response(rejected),
        "chosen_score": chosen["score"],
        "rejected_score": rejected["score"],
        "margin": round(chosen["score"] - rejected["score"], 6),
        "chosen_sample": chosen["sample_index"],
        "rejected_sample": rejected["sample_index"],
    }
    if "prompt_ids" in chosen and "completion_ids" in chosen and "completion_ids" in rejected:
        record.update(
            prompt_ids=chosen["prompt_ids"],
            chosen_ids=chosen["completion_ids"],
            rejected_ids=rejected["completion_ids"],
        )
    return record


def make_pairs(
    rows: Sequence[dict[str, Any]], config: ScoringConfig, strategy: str | None = None
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Preference pairs from scored rows, and why prompts were dropped."""
    strategy = strategy or config.pair_strategy
    pairs, dropped = [], Counter[str]()
    for group in rank(rows).values():
        made, why = _candidates(_dedupe(group), config, strategy)
        if why is not None:
            dropped[why] += 1
        pairs += [_record(a, b) for a, b in made]
    return pairs, dropped


def kto_labels(rows: Sequence[dict[str, Any]], config: ScoringConfig) -> list[dict[str, Any]]:
    """Unpaired examples for KTO: desirable when the sample passes the gate."""
    out = []
    for group in rank(rows).values():
        for row in _dedupe(group):
            out.append(
                {
                    "task_id": row["task_id"],
                    "prompt": row.get("prompt", ""),
                    "completion": _response(row),
                    "label": _pass_rate(row) >= config.gate_threshold,
                    "score": row["score"],
                    **(
                        {"prompt_ids": row["prompt_ids"], "completion_ids": row["completion_ids"]}
                        if "prompt_ids" in row and "completion_ids" in row
                        else {}
                    ),
                }
            )
    return out
