"""Developers' labels as training pairs: the majority choice chosen, ties, skips and even
splits left out, a stable held-out share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.errors import InputError
from codealign.readability.human import held_out, human_pairs, split_human


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_labels_become_pairs_by_majority(tmp_path: Path) -> None:
    proposals = write(tmp_path / "p.jsonl", [
        {"pair_id": f"p{i}", "prompt": f"task {i}", "response_a": f"A{i}", "response_b": f"B{i}"}
        for i in range(5)])  # fmt: skip
    votes = [("p0", "ann", "a"), ("p1", "ann", "b"), ("p1", "bob", "b"), ("p1", "cid", "a"),
             ("p2", "ann", "a"), ("p2", "bob", "b"), ("p3", "ann", "tie"),
             ("p4", "ann", "skip")]  # fmt: skip
    labels = write(tmp_path / "l.jsonl", [{"pair_id": p, "annotator": w, "choice": c}
                                          for p, w, c in votes])  # fmt: skip
    pairs = human_pairs(labels, proposals, weight=2.0)
    assert [(p["pair_id"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("p0", "A0", "B0"),
        ("p1", "B1", "A1"),
    ]  # p2 split evenly; p3 a tie; p4 skipped
    assert pairs[1]["votes"] == {"b": 2, "a": 1}
    assert all(p["weight"] == 2.0 and p["family"] == "human" for p in pairs)
    bad = write(tmp_path / "bad.jsonl", [{"pair_id": "zz", "annotator": "a", "choice": "a"}])
    with pytest.raises(InputError, match="a label for pair 'zz'"):
        human_pairs(bad, proposals)
    with pytest.raises(InputError, match="must be > 0"):
        human_pairs(labels, proposals, weight=0)


def test_the_held_out_share_is_stable_and_about_its_size() -> None:
    pairs = [{"pair_id": f"p{i}"} for i in range(400)]
    train, held = split_human(pairs, 0.25)
    assert 70 < len(held) < 130 and len(train) + len(held) == 400
    assert held == [p for p in pairs if held_out(p["pair_id"], 0.25)]
    assert split_human(pairs[:200], 0.25)[1] == [p for p in held if int(p["pair_id"][1:]) < 200]
