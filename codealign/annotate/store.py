"""What the labelling page works on: the proposed pairs, who labelled what, and how far
annotators agree. No web framework here.

A pair's two programs are ``a`` and ``b`` as proposed; which one an annotator sees on
the left is drawn once per (pair, annotator) from a hash, so reopening the page shows the
same sides and no annotator can learn that ``a`` tends to be one kind of program. A label
names the program chosen (``a``, ``b``, ``tie``) or ``skip``, with who chose it, when, and
which side was left. The labels file is rewritten whole, atomically, after every label
and every undo: it always holds exactly the labels standing, and a killed server or a
closed tab loses nothing.

Text the page cannot show faithfully is dealt with here: bytes that are not UTF-8 and
lone surrogates become U+FFFD as the pairs are read, and characters that are invisible
or reorder the text (Trojan Source's bidirectional overrides) are found by
``hidden_chars`` for the page to show and warn about.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import itertools
import json
import re
import threading
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from codealign.errors import InputError
from codealign.jsonl import read_jsonl, write_jsonl

#: Beyond this many line comparisons (lines left x lines right, once the common head and
#: tail are set aside) the diff is the cheap one: difflib's cost grows with that product.
DIFF_BUDGET = 40_000
#: At most this many hidden characters are listed per text (all are counted).
HIDDEN_LISTED = 50
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Invisible in a line of code though not a format character: Hangul fillers.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")

Choice = Literal["a", "b", "tie", "skip"]
CHOICES: tuple[Choice, ...] = ("a", "b", "tie", "skip")


@dataclass(frozen=True)
class ProposedPair:
    """Two programs that do the same thing (both pass the task's tests)."""

    pair_id: str
    task_id: str
    prompt: str
    a: str
    b: str


@dataclass(frozen=True)
class Label:
    pair_id: str
    annotator: str
    choice: Choice
    left: Literal["a", "b"]  # which program the annotator saw on the left
    time: float


def _clean(value: object) -> str:
    """``value`` as text the page can show and the labels file can hold: a lone
    surrogate (JSON's ``"\\ud800"``, not UTF-8) becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", str(value))


def _rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSONL file's objects, bytes that are not UTF-8 read as U+FFFD. Lines end at
    ``\\n`` only: JSON strings may hold U+2028 as it is."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8", "replace")
    except (OSError, gzip.BadGzipFile, EOFError) as exc:
        raise InputError(f"cannot read the pairs ({exc})", path=path) from None
    for line, row_text in enumerate(text.split("\n"), start=1):
        if not row_text.strip():
            continue
        try:
            row = json.loads(row_text)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg}", path=path, line=line) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object", path=path, line=line)
        yield line, row


def read_pairs(path: str | Path) -> list[ProposedPair]:
    """The proposals file (``codealign rm-pairs --ambiguous`` writes it)."""
    pairs: list[ProposedPair] = []
    seen: set[str] = set()
    for line, row in _rows(path):
        try:
            pair = ProposedPair(**{k: _clean(row[k]) for k in ProposedPair.__dataclass_fields__})
        except KeyError as exc:
            raise InputError(f"missing field {exc.args[0]!r}", path=path, line=line) from None
        if pair.pair_id in seen:
            raise InputError(f"pair {pair.pair_id!r} given twice", path=path, line=line)
        seen.add(pair.pair_id)
        pairs.append(pair)
    if not pairs:
        raise InputError("no pairs to label", path=path)
    return pairs


def left_side(pair_id: str, annotator: str) -> Literal["a", "b"]:
    """Which program ``annotator`` sees on the left of ``pair_id``: fixed, and a coin flip
    across pairs and annotators."""
    digest = hashlib.sha256(f"{pair_id}\0{annotator}".encode()).digest()
    return "a" if digest[0] % 2 == 0 else "b"


def page_lines(text: str) -> list[str]:
    """``text``'s lines as the page numbers them: split at ``\\n`` only (U+2028 and the
    other breaks ``str.splitlines`` knows stay inside their line), a final one dropped."""
    return text.removesuffix("\n").split("\n")


def line_diff(left: str, right: str) -> tuple[list[str], list[str]]:
    """Each line's mark on either side: ``same``, or ``changed`` where the two differ.
    The lines between the common head and tail are matched by difflib while that fits
    ``DIFF_BUDGET``; beyond it a line is ``same`` when the other side's middle has it."""
    a, b = page_lines(left), page_lines(right)
    marks_a, marks_b = ["changed"] * len(a), ["changed"] * len(b)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    for i in itertools.chain(range(head), range(len(a) - tail, len(a))):
        marks_a[i] = "same"
    for j in itertools.chain(range(head), range(len(b) - tail, len(b))):
        marks_b[j] = "same"
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    if len(mid_a) * len(mid_b) <= DIFF_BUDGET:
        matcher = difflib.SequenceMatcher(a=mid_a, b=mid_b, autojunk=False)
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                marks_a[head + block.a + k] = marks_b[head + block.b + k] = "same"
    else:
        in_a, in_b = set(mid_a), set(mid_b)
        for i, line in enumerate(mid_a, start=head):
            marks_a[i] = "same" if line in in_b else "changed"
        for j, line in enumerate(mid_b, start=head):
            marks_b[j] = "same" if line in in_a else "changed"
    return marks_a, marks_b


def is_hidden(char: str) -> bool:
    """Whether ``char`` shows as nothing, or reorders what is shown around it: format
    characters (bidirectional overrides and isolates, zero-width ones, the BOM, the soft
    hyphen), line and paragraph separators, control characters but tab and newline."""
    kind = unicodedata.category(char)
    if kind == "Cc":
        return char not in "\t\n\r"
    return kind in ("Cf", "Zl", "Zp") or char in _INVISIBLE_LETTERS


def hidden_chars(text: str) -> dict[str, Any]:
    """The hidden characters of ``text`` (``is_hidden``), for a warning: how many, and
    the first ``HIDDEN_LISTED`` as ``{"line", "column", "char": "U+202E", "name"}``
    (line and column from 1, lines as the page numbers them)."""
    found: list[dict[str, Any]] = []
    count = 0
    for n, line in enumerate(page_lines(text), start=1):
        for column, char in enumerate(line, start=1):
            if not is_hidden(char):
                continue
            count += 1
            if len(found) < HIDDEN_LISTED:
                name = unicodedata.name(char, "a control character")
                found.append({"line": n, "column": column, "char": f"U+{ord(char):04X}",
                              "name": name})  # fmt: skip
    return {"count": count, "chars": found}


class LabelStore:
    """The pairs and the labels file; safe for many annotators' requests at once."""

    def __init__(self, pairs: Sequence[ProposedPair], labels_path: str | Path) -> None:
        self.pairs = list(pairs)
        self.by_id = {p.pair_id: p for p in self.pairs}
        self.path = Path(labels_path)
        self._lock = threading.Lock()
        self._labels: dict[tuple[str, str], Label] = {}
        self._order: list[tuple[str, str]] = []  # label keys, oldest first (undo pops)
        if self.path.exists():
            for line, row in read_jsonl(self.path):
                label = self._checked(row, f"{self.path}:{line}")
                self._put(label)

    def _checked(self, row: dict[str, Any], where: str) -> Label:
        try:
            label = Label(str(row["pair_id"]), str(row["annotator"]), row["choice"],
                          row["left"], float(row["time"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: not a label ({exc})") from None
        if label.pair_id not in self.by_id:
            raise InputError(f"{where}: a label for pair {label.pair_id!r}, which is not proposed")
        if label.choice not in CHOICES or label.left not in ("a", "b"):
            raise InputError(f"{where}: choice {label.choice!r} / left {label.left!r}")
        return label

    def _put(self, label: Label) -> None:
        key = (label.pair_id, label.annotator)
        if key in self._labels:
            self._order.remove(key)
        self._labels[key] = label
        self._order.append(key)

    def _save(self) -> None:
        write_jsonl(self.path, (asdict(self._labels[k]) for k in self._order))

    def label(self, pair_id: str, annotator: str, choice: Choice) -> Label:
        """Record ``annotator``'s choice for ``pair_id`` (a later one replaces it)."""
        if pair_id not in self.by_id:
            raise KeyError(pair_id)
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        made = Label(pair_id, annotator, choice, left_side(pair_id, annotator), time.time())
        with self._lock:
            self._put(made)
            self._save()
        return made

    def undo(self, annotator: str) -> Label | None:
        """Take back ``annotator``'s latest label; None when there is none."""
        with self._lock:
            mine = [k for k in self._order if k[1] == annotator]
            if not mine:
                return None
            label = self._labels.pop(mine[-1])
            self._order.remove(mine[-1])
            self._save()
        return label

    def labels(self) -> list[Label]:
        with self._lock:
            return [self._labels[k] for k in self._order]

    def done_by(self, annotator: str) -> set[str]:
        """The pairs labelled by exactly ``annotator`` (no other name, however alike)."""
        with self._lock:  # another request's label may be going in
            return {pair for pair, who in self._labels if who == annotator}

    def next_pair(self, annotator: str) -> ProposedPair | None:
        """The first pair ``annotator`` has not labelled, in the proposals' order."""
        done = self.done_by(annotator)
        return next((p for p in self.pairs if p.pair_id not in done), None)


def agreement(labels: Sequence[Label]) -> dict[str, Any]:
    """How far annotators agree on the pairs two of them labelled (skips left out):
    per pair of annotators, the share of equal choices and Cohen's kappa."""
    by_pair: dict[str, dict[str, str]] = {}
    for label in labels:
        if label.choice != "skip":
            by_pair.setdefault(label.pair_id, {})[label.annotator] = label.choice
    annotators = sorted({who for choices in by_pair.values() for who in choices})
    rows = []
    for first, second in itertools.combinations(annotators, 2):
        both = [(c[first], c[second]) for c in by_pair.values() if first in c and second in c]
        if not both:
            continue
        observed = sum(x == y for x, y in both) / len(both)
        expected = sum(
            (sum(x == k for x, _ in both) / len(both)) * (sum(y == k for _, y in both) / len(both))
            for k in ("a", "b", "tie")
        )
        kappa = 1.0 if expected == 1 else (observed - expected) / (1 - expected)
        rows.append({"annotators": [first, second], "pairs": len(both),
                     "agreement": round(observed, 6), "kappa": round(kappa, 6)})  # fmt: skip
    return {"annotators": annotators, "pairs_labelled": len(by_pair), "between": rows}
