"""The types signal: mypy over the batch, errors mapped to [0, 1]."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from codealign.scoring.base import Item, SignalValue
from codealign.scoring.lint import violations_to_score
from codealign.scoring.static_tools import ToolError, mypy_errors


def types_signal(items: Sequence[Item], strict: bool = False) -> list[SignalValue]:
    """Type-checking cleanliness; a program that does not parse scores 0 (and is kept out of
    the mypy run, where a syntax error would stop the whole batch)."""
    parseable = [i for i, item in enumerate(items) if item.parses]
    errors = mypy_errors([items[i].program for i in parseable], strict=strict)
    out = [SignalValue(0.0, {"parse_error": True}) for _ in items]
    for i, codes in zip(parseable, errors, strict=True):
        if isinstance(codes, ToolError):  # the worst value, and why: never the batch's
            out[i] = SignalValue(0.0, {"tool_error": codes.reason})
            continue
        out[i] = SignalValue(
            violations_to_score(len(codes)), {"errors": len(codes), "codes": dict(Counter(codes))}
        )
    return out
