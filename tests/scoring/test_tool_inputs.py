"""The static signals can be neither talked to nor crashed by a program: no comment turns
a finding off, and a program that breaks a parser or a signal costs only itself."""

from __future__ import annotations

import tokenize
from collections.abc import Sequence
from typing import Any

import pytest

from codealign.execution.records.results import ExecResult
from codealign.execution.records.results import TestVerdict as Verdict
from codealign.samples import Sample
from codealign.scoring import readability
from codealign.scoring.base import Item, SignalValue
from codealign.scoring.combine import score_items
from codealign.scoring.lint import lint_signal
from codealign.scoring.static_tools import ToolError, blank_comments, mypy_errors, ruff_findings
from codealign.scoring.types import types_signal
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import AssertsSuite, Task

TASK = Task("t", "", "f", AssertsSuite(("assert f(1) == 1",)), prompt_style="text")

# Four lint findings (F401 for os and sys, F841 for unused and y) and three type errors
# (assignment, return-value twice), over statements that span lines.
PLAIN = [
    "import os",
    "import sys",
    "",
    "",
    "def f(x: int) -> int:",
    "    unused = 1",
    "    y: int = (",
    '        "text"',
    "    )",
    "    return g(",
    "        x, 2",
    "    )",
    "",
    "",
    "def g(a: int, b: int) -> str:",
    "    return a + b",
]
INLINE = {
    0: "# noqa",
    1: "# NOQA: F401  # type: ignore[import]",
    4: "# pyright: ignore",
    5: "#noqa:F841",
    6: "# type: ignore[assignment]",
    7: "# type:ignore",
    9: "# type: ignore",
    10: "# noqa: E501  # type: ignore[return-value]",
    14: "# ruff: disable[F841]",
    15: "#type:ignore[return-value]# noqa",
}
HEADERS = [
    "# -*- coding: utf-8 -*-",
    "# mypy: ignore-errors",
    "#mypy:ignore-errors",
    '# mypy: disable-error-code="assignment, return-value"',
    "# ruff: noqa",
    "# ruff: noqa: F401, F841",
    "# flake8: noqa",
    "# isort: skip_file",
    "# fmt: off",
    "# pyright: basic",
    "# type: ignore",
    "#  TYPE: IGNORE",
    "# pylint: skip-file",
]


def item(program: str, index: int = 0) -> Item:
    result = ExecResult("t", index, "passed", [Verdict("test_list[0]", "passed")])
    return Item(TASK, Sample("t", index, index, solution=program), result, program)


def suppressed(headers: Sequence[str]) -> str:
    lines = [f"{line}  {INLINE[i]}" if i in INLINE else line for i, line in enumerate(PLAIN)]
    return "\n".join([*headers, *lines]) + "\n"


def test_no_suppression_comment_changes_a_static_signal() -> None:
    """The plain program, the same with every kind of suppression comment at once, and
    with each file-level one alone (first line, as tools read them): 4 lint findings and
    3 type errors each, so 1/5 and 1/4."""
    programs = ["\n".join(PLAIN) + "\n", suppressed(HEADERS)]
    programs += [suppressed([header]) for header in HEADERS]
    items = [item(p, i) for i, p in enumerate(programs)]
    lint, types = lint_signal(items), types_signal(items)
    assert lint[0].details == {"violations": 4, "codes": {"F401": 2, "F841": 2}}
    assert types[0].details == {"errors": 3, "codes": {"assignment": 1, "return-value": 2}}
    for i in range(len(items)):
        assert (lint[i].value, types[i].value) == (0.2, 0.25), programs[i]
        assert (lint[i].details, types[i].details) == (lint[0].details, types[0].details)
    strict = types_signal(items[:2], strict=True)
    assert strict[0] == strict[1]


def test_comments_are_blanked_in_place() -> None:
    """Every comment's text after ``#`` becomes underscores, spaces kept: lines keep
    their numbers and lengths, strings that look like comments stay, lone CRs end lines."""
    program = 's = "# type: ignore"  # type: ignore[arg-type]\nf(1,  #noqa\n  2)\n'
    assert blank_comments(program) == (
        's = "# type: ignore"  # _____ ________________\nf(1,  #____\n  2)\n'
    )
    assert blank_comments("x = 1\r# type: ignore\r") == "x = 1\n# _____ ______\n"
    assert blank_comments("x = 'é'  # ü noqa\n") == "x = 'é'  # ü ____\n"
    with pytest.raises(tokenize.TokenError):
        blank_comments("f(1,\n")


def test_a_program_the_tools_cannot_be_handed_costs_only_itself() -> None:
    """Handed straight to the tools, a program that does not tokenize gets a ToolError
    with the reason; its neighbours are checked as usual."""
    programs = ["import os\n", "f(1,\n", "x: int = 'a'\n"]
    lint = ruff_findings(programs, ["F"])
    types = mypy_errors(programs)
    assert lint[0] == ["F401"] and types[2] == ["assignment"]
    for found in (lint[1], types[1]):
        assert isinstance(found, ToolError) and "TokenError" in found.reason


# Past what the parser or the compiler takes: a too long sum (RecursionError), too many
# nested parentheses and brackets (SyntaxError), a NUL byte (SyntaxError/ValueError).
BREAKING = [
    "x = 1" + "+1" * 100_000 + "\n",
    "x = " + "(" * 1000 + "1" + ")" * 1000 + "\n",
    "x = " + "[" * 500 + "]" * 500 + "\n",
    "def f():\n    return " + "not " * 50_000 + "1\n",
    "x = 1\x00\n",
]
HONEST = "def f(x: int) -> int:\n    return x\n"


def test_programs_that_break_parsers_get_the_worst_value_alone() -> None:
    programs = [HONEST, *BREAKING, "import os\n" + HONEST]
    items = [item(p, i) for i, p in enumerate(programs)]
    rows = score_items(items, ScoringConfig(readability_weight=0.0))
    assert rows[0]["signals"] == {"execution": 1.0, "lint": 1.0, "types": 1.0}
    assert rows[-1]["signals"] == {"execution": 1.0, "lint": 0.5, "types": 1.0}
    for row in rows[1:-1]:
        assert row["signals"] == {"execution": 1.0, "lint": 0.0, "types": 0.0}
        assert row["details"]["lint"] == row["details"]["types"] == {"parse_error": True}


def test_a_signal_that_raises_on_one_program_costs_only_that_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The readability signal raising RecursionError whenever one program is in its
    batch: halving finds it, it alone scores 0 on readability with the reason."""
    calls: list[int] = []

    def fake(items: Sequence[Item], *args: Any) -> list[SignalValue]:
        calls.append(len(items))
        if any("deep" in i.program for i in items):
            raise RecursionError("maximum recursion depth exceeded")
        return [SignalValue(0.5) for _ in items]

    monkeypatch.setattr(readability, "readability_signal", fake)
    items = [item(HONEST + f"# {i}\n", i) for i in range(4)]
    items[2] = item(HONEST + "deep = 1\n", 2)
    rows = score_items(items, ScoringConfig(lint_weight=0.0, types_weight=0.0))
    assert [r["signals"]["readability"] for r in rows] == [0.5, 0.5, 0.0, 0.5]
    assert rows[2]["details"]["readability"] == {
        "signal_error": "RecursionError: maximum recursion depth exceeded"
    }
    assert calls == [4, 2, 2, 1, 1]  # all, then halves, then the failing half's two
    assert [r["score"] for r in rows] == [pytest.approx((3 + 0.5) / 4)] * 2 + [
        pytest.approx(3 / 4),
        pytest.approx((3 + 0.5) / 4),
    ]
