"""Developers' labels (``codealign annotate``) as reward-model training pairs.

Each labelled pair becomes one preference: the responses of its two programs (what the
readability models score), the majority choice chosen. Ties, skips and pairs whose
annotators split evenly teach nothing about order and are left out. A fixed share of the
pairs, drawn by a hash of the pair id (the same on every rerun, whoever labels more), is
held out: the readability model's accuracy on those is what a refresh is judged by.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.jsonl import read_jsonl

HUMAN_FAMILY = "human"


def human_pairs(
    labels: str | Path, proposals: str | Path, weight: float = 1.0
) -> list[dict[str, Any]]:
    """The labelled pairs as ``{prompt, chosen, rejected, margin, weight, family,
    pair_id}`` records, in the proposals' order."""
    if weight <= 0:
        raise InputError("the weight of human labels must be > 0")
    proposed: dict[str, dict[str, Any]] = {}
    for line, row in read_jsonl(proposals):
        for name in ("pair_id", "prompt", "response_a", "response_b"):
            if not isinstance(row.get(name), str):
                raise InputError(f"field {name!r} must be a string", path=proposals, line=line)
        proposed[row["pair_id"]] = row
    votes: dict[str, Counter[str]] = {}
    for line, row in read_jsonl(labels):
        pair_id = row.get("pair_id")
        if pair_id not in proposed:
            raise InputError(
                f"a label for pair {pair_id!r}, not in {proposals}", path=labels, line=line
            )
        if row.get("choice") in ("a", "b"):
            votes.setdefault(pair_id, Counter())[row["choice"]] += 1
    out = []
    for pair_id, row in proposed.items():
        count = votes.get(pair_id, Counter())
        if count["a"] == count["b"]:
            continue
        first, second = ("a", "b") if count["a"] > count["b"] else ("b", "a")
        out.append({
            "pair_id": pair_id,
            "prompt": row["prompt"],
            "chosen": row[f"response_{first}"],
            "rejected": row[f"response_{second}"],
            "margin": 1.0,
            "weight": weight,
            "family": HUMAN_FAMILY,
            "votes": dict(count),
        })  # fmt: skip
    return out


def held_out(pair_id: str, fraction: float) -> bool:
    """Whether ``pair_id`` belongs to the held-out share (a hash: stable across reruns)."""
    digest = hashlib.sha256(f"heldout\0{pair_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_human(
    pairs: Sequence[dict[str, Any]], fraction: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training pairs, held-out pairs)."""
    if not 0 <= fraction < 1:
        raise InputError("the held-out share of human labels must be in [0, 1)")
    held = [p for p in pairs if held_out(p["pair_id"], fraction)]
    return [p for p in pairs if not held_out(p["pair_id"], fraction)], held
