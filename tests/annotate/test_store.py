"""The labels behind the page: sides fixed per annotator, the file rewritten whole after
every label and undo, reopened where it was left, and agreement worked out by hand."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from codealign.annotate import store as store_module
from codealign.annotate.store import (
    Label,
    LabelStore,
    agreement,
    hidden_chars,
    is_hidden,
    left_side,
    line_diff,
    read_pairs,
)
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
    # Head "a" and tail "e" set aside; difflib matches "c" in the middle b c d / c x.
    assert line_diff("a\nb\nc\nd\ne", "a\nc\nx\ne\n") == (
        ["same", "changed", "same", "changed", "same"],
        ["same", "same", "changed", "same"],
    )
    assert line_diff("", "x\n") == (["changed"], ["changed"])  # one empty line, as shown
    # Lines as the page numbers them: U+2028 stays inside its line.
    assert line_diff("a\u2028b\nc", "a\u2028b\nd") == (["same", "changed"], ["same", "changed"])


def test_line_marks_beyond_the_budget_are_the_cheap_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """Middles of 3 x 3 lines (9 comparisons) over a budget of 8: a line is ``same``
    when the other middle has it, whatever the order (difflib would match only one of
    c and d, which swapped places)."""
    monkeypatch.setattr(store_module, "DIFF_BUDGET", 8)
    assert line_diff("a\nc\nd\nx\nz", "a\nd\nc\ny\nz") == (
        ["same", "same", "same", "changed", "same"],
        ["same", "same", "same", "changed", "same"],
    )
    monkeypatch.setattr(store_module, "DIFF_BUDGET", 9)  # within it: difflib's matching
    assert line_diff("a\nc\nd\nx\nz", "a\nd\nc\ny\nz")[0].count("changed") == 2


def test_line_marks_of_100k_repeated_lines_take_a_moment() -> None:
    """The same line 100,000 times against itself with its ends changed (difflib:
    10^10 comparisons), and against another line repeated."""
    many = "x = 1\n" * 100_000
    started = time.monotonic()
    left, right = line_diff(many, "y\n" + many[6:] + "z\n")
    assert left[:2] == ["same", "same"] and right[0] == right[-1] == "changed"
    assert len(left) == 100_000 and right.count("same") == 99_999
    assert set(line_diff(many, "y = 2\n" * 100_000)[1]) == {"changed"}
    assert time.monotonic() - started < 3


def test_hidden_characters_worked_by_hand() -> None:
    """Line 1: an RLO at column 3 (Trojan Source). Line 2: a zero-width space at 2 and
    a line separator at 4 (one page line: only \\n ends one). Line 3: a BOM at 1. Tab,
    CR and ordinary non-ASCII letters are not hidden."""
    found = hidden_chars("ab\u202ec\nx\u200by\u2028z\n\ufeff\n\tcafé\r\n")
    assert found["count"] == 4
    assert [(c["line"], c["column"], c["char"]) for c in found["chars"]] == [
        (1, 3, "U+202E"), (2, 2, "U+200B"), (2, 4, "U+2028"), (3, 1, "U+FEFF")]  # fmt: skip
    assert found["chars"][0]["name"] == "RIGHT-TO-LEFT OVERRIDE"
    for char in "\u202a\u202d\u2066\u2069\u200f\u2029\u00ad\u061c\u2060\x1b\U000e0041\u3164":
        assert is_hidden(char), hex(ord(char))
    for char in "a\t\n\r é\u00a0\u4e2d":
        assert not is_hidden(char), hex(ord(char))
    many = hidden_chars("\u200b" * 500)
    assert many["count"] == 500 and len(many["chars"]) == store_module.HIDDEN_LISTED
    assert hidden_chars("plain\n") == {"count": 0, "chars": []}


def test_text_that_is_not_unicode_is_read_as_u_fffd(tmp_path: Path) -> None:
    """A lone surrogate escaped in the JSON, bytes that are not UTF-8 (raw, and in a
    gzipped file), and U+2028 inside a string (not a line break of the file)."""
    row = {"pair_id": "p\ud800", "task_id": "t", "prompt": "", "a": "x = '\ud800'\n",
           "b": "y = '\u2028'\n"}  # fmt: skip
    text = json.dumps(row, ensure_ascii=True) + "\n"
    raw = json.dumps({**row, "pair_id": "q", "a": "PLACE"}, ensure_ascii=False)
    data = (
        text.encode() + raw.encode("utf-8", "surrogatepass").replace(b"PLACE", b"\xff\xfe") + b"\n"
    )
    for path in (tmp_path / "pairs.jsonl", tmp_path / "pairs.jsonl.gz"):
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        first, second = read_pairs(path)
        assert (first.pair_id, first.a, first.b) == ("p\ufffd", "x = '\ufffd'\n", "y = '\u2028'\n")
        assert second.a == "\ufffd\ufffd"
        labels = LabelStore([first, second], tmp_path / f"labels-{path.suffix}.jsonl")
        labels.label("p\ufffd", "ann", "a")  # written as UTF-8, read back the same
        assert LabelStore([first, second], labels.path).labels()[0].pair_id == "p\ufffd"


def test_annotators_are_told_apart_by_their_whole_names(pairs_file: Path, tmp_path: Path) -> None:
    store = LabelStore(read_pairs(pairs_file), tmp_path / "labels.jsonl")
    store.label("p00", "alice2", "a")
    store.label("p01", "alice2", "b")
    store.label("p02", "alice", "tie")
    assert store.done_by("alice") == {"p02"} and store.done_by("alice2") == {"p00", "p01"}
    assert store.done_by("alic") == set() and store.done_by("Alice") == set()
    assert store.next_pair("alice").pair_id == "p00"  # type: ignore[union-attr]
    assert store.undo("alice").pair_id == "p02"  # type: ignore[union-attr]
    assert store.undo("alice") is None  # alice2's labels are not alice's to take back
    assert store.done_by("alice2") == {"p00", "p01"}


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
