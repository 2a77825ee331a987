"""The lint and security signals: ruff over the batch, violations mapped to [0, 1]."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from codealign.scoring.base import Item, SignalValue
from codealign.scoring.static_tools import ToolError, ruff_findings

#: pyflakes, pycodestyle, bugbear and simplify.
DEFAULT_LINT_RULES = ("F", "E", "W", "B", "SIM")
#: ruff's port of bandit.
SECURITY_RULES = ("S",)


def violations_to_score(count: int) -> float:
    """1 for none, 1/2 for one, 1/3 for two...: the first mistakes cost the most."""
    return 1.0 / (1.0 + count)


def _ruff_signal(items: Sequence[Item], rules: Sequence[str]) -> list[SignalValue]:
    parseable = [i for i, item in enumerate(items) if item.parses]
    findings = ruff_findings([items[i].program for i in parseable], rules)
    out = [SignalValue(0.0, {"parse_error": True}) for _ in items]
    for i, codes in zip(parseable, findings, strict=True):
        if isinstance(codes, ToolError):  # the worst value, and why: never the batch's
            out[i] = SignalValue(0.0, {"tool_error": codes.reason})
            continue
        out[i] = SignalValue(
            violations_to_score(len(codes)),
            {"violations": len(codes), "codes": dict(Counter(codes))},
        )
    return out


def lint_signal(
    items: Sequence[Item], rules: Sequence[str] = DEFAULT_LINT_RULES
) -> list[SignalValue]:
    """Lint cleanliness; a program that does not parse scores 0."""
    return _ruff_signal(items, rules)


def security_signal(items: Sequence[Item]) -> list[SignalValue]:
    """Freedom from bandit-style findings (ruff's S rules); off by default."""
    return _ruff_signal(items, SECURITY_RULES)
