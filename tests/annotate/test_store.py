"""The labels behind the page: sides fixed per annotator, the file rewritten whole after
every label and undo, reopened where it was left, and agreement worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.annotate.store import Label, LabelStore, agreement, left_side, line_diff, read_pairs
from codealign.errors import InputError


def test_labels_and_undo_rewrite_the_file_and_a_reopened_store_continues(
    pairs_file: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.jsonl"
    store = LabelStore(read_pairs(pairs_file), labels)
    assert store.next_pair("ann").pair_id == "p00"  # type: ignore[union-attr]
    store.label("p00", "ann", "a")
    store.label("p01", "ann", "tie")
    store.label("p00", "bob", "b")
    assert store.undo("ann") is not None  # takes back p01 (ann's latest), not bob's
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert [(r["pair_id"], r["annotator"], r["choice"]) for r in rows] == [
        ("p00", "ann", "a"), ("p00", "bob", "b")]  # fmt: skip
    assert rows[0]["left"] == left_side("p00", "ann")
    again = LabelStore(read_pairs(pairs_file), labels)
    assert again.next_pair("ann").pair_id == "p01"  # type: ignore[union-attr]
    assert again.next_pair("bob").pair_id == "p01"  # type: ignore[union-attr]
    assert again.undo("nobody") is None
    with pytest.raises(KeyError):
        again.label("p99", "ann", "a")


def test_sides_are_fixed_per_annotator_and_mixed_across_pairs() -> None:
    assert left_side("p1", "ann") == left_side("p1", "ann")
    sides = [left_side(f"p{i}", "ann") for i in range(200)]
    assert 70 < sides.count("a") < 130
    assert any(left_side(f"p{i}", "ann") != left_side(f"p{i}", "bob") for i in range(10))


def test_a_labels_file_naming_a_pair_not_proposed_is_refused(
    pairs_file: Path, tmp_path: Path
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"pair_id": "zz", "annotator": "a", "choice": "a",
                                  "left": "a", "time": 0}) + "\n")  # fmt: skip
    with pytest.raises(InputError, match=r"labels\.jsonl:1: a label for pair 'zz'"):
        LabelStore(read_pairs(pairs_file), labels)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"pair_id": "x", "task_id": "t", "prompt": "", "a": ""}\n')
    with pytest.raises(InputError, match="missing field 'b'"):
        read_pairs(bad)


def test_line_marks() -> None:
    left, right = "a\nb\nc\n", "a\nB\nc\nd\n"
    assert line_diff(left, right) == (["same", "changed", "same"],
                                      ["same", "changed", "same", "changed"])  # fmt: skip


def test_agreement_worked_by_hand() -> None:
    """ann and bob both label 4 pairs: a/a, b/b, a/b, tie/tie. Observed 3/4. Expected
    by chance: ann a 2/4, b 1/4, tie 1/4; bob a 1/4, b 2/4, tie 1/4; so 2/16 + 2/16 +
    1/16 = 5/16, and kappa = (3/4 - 5/16) / (1 - 5/16) = 7/11. A skip is left out, and
    cid, who shares no pair with them, adds no row."""
    rows = [("p1", "a", "a"), ("p2", "b", "b"), ("p3", "a", "b"), ("p4", "tie", "tie")]
    labels = [Label(p, "ann", x, "a", 0) for p, x, _ in rows]  # type: ignore[arg-type]
    labels += [Label(p, "bob", y, "a", 0) for p, _, y in rows]  # type: ignore[arg-type]
    labels += [Label("p5", "ann", "skip", "a", 0), Label("p5", "bob", "a", "a", 0),
               Label("p6", "cid", "a", "a", 0)]  # fmt: skip
    report = agreement(labels)
    assert report["annotators"] == ["ann", "bob", "cid"]
    (row,) = report["between"]
    assert row["annotators"] == ["ann", "bob"] and row["pairs"] == 4
    assert row["agreement"] == 0.75
    assert row["kappa"] == pytest.approx(7 / 11, abs=1e-6)
