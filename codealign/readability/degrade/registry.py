"""Every degradation, registered once with its weight, and ``degrade``, which composes them.

A degradation is a pure function ``(source, rng) -> source | None`` (None: it does not
apply) that keeps the program's behaviour. ``DEGRADATIONS`` lists them all, by name.

Its order is part of the generated data: ``degrade`` draws one random number per entry,
in this order, to shuffle them, so moving or inserting an entry changes every pair. Bump
``pairs.DATA_VERSION`` when you do (that also retrains the default readability model).
The order is the historical one: names; docstrings, comments, type hints; formatting;
needless nesting; needless state and loops; magic numbers; dead code.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from codealign.readability.degrade import (
    comments,
    constants,
    dead_code,
    formatting,
    loops,
    names,
    nesting,
    variables,
)

Degrader = Callable[[str, random.Random], "str | None"]

#: The modules that define degradations (a test checks that each of their degradations
#: is registered here).
MODULES = (names, comments, formatting, nesting, variables, loops, constants, dead_code)


@dataclass(frozen=True)
class Degradation:
    """One way to make a program harder to read without changing what it does.

    ``weight`` (> 0) makes it come earlier in ``degrade``'s random order, so more often
    among the few that get applied.
    """

    name: str
    apply: Degrader
    weight: float = 1.0


def table(entries: Iterable[Degradation]) -> dict[str, Degradation]:
    """The degradations by name, in the order given; a name given twice is an error."""
    out: dict[str, Degradation] = {}
    for entry in entries:
        if entry.name in out:
            raise ValueError(f"degradation {entry.name!r} is registered twice")
        if not entry.weight > 0:
            raise ValueError(f"degradation {entry.name!r} needs a positive weight")
        out[entry.name] = entry
    return out


# The smells every hand-written unreadable program has (poor names, no docs, no hints,
# crammed code) get higher weights, so they come up more often.
DEGRADATIONS: dict[str, Degradation] = table(
    (
        Degradation("rename", names.rename, weight=3.0),
        Degradation("strip_docstrings", comments.strip_docstrings, weight=2.0),
        Degradation("strip_comments", comments.strip_comments),
        Degradation("strip_type_hints", comments.strip_type_hints, weight=2.0),
        Degradation("cram", formatting.cram, weight=2.0),
        Degradation("inconsistent_format", formatting.inconsistent_format),
        Degradation("if_true", nesting.if_true),
        Degradation("redundant_else", nesting.redundant_else),
        Degradation("else_pass", nesting.else_pass),
        Degradation("nested_ifs", nesting.nested_ifs),
        Degradation("bool_return", nesting.bool_return),
        Degradation("temp_return", variables.temp_return),
        Degradation("temp_vars", variables.temp_vars),
        Degradation("flag_var", variables.flag_var),
        Degradation("bool_compare", nesting.bool_compare),
        Degradation("index_loop", loops.index_loop),
        Degradation("magic_numbers", constants.magic_numbers),
        Degradation("dead_branch", dead_code.dead_branch),
        Degradation("unreachable_code", dead_code.unreachable_code),
        Degradation("unused_assign", dead_code.unused_assign),
        Degradation("unused_import", dead_code.unused_import),
        Degradation("commented_code", comments.commented_code),
    )
)


def weights() -> dict[str, float]:
    """Each degradation's weight, by name, as ``degrade`` uses them."""
    return {name: entry.weight for name, entry in DEGRADATIONS.items()}


def degrade(
    source: str, rng: random.Random, k: int | None = None
) -> tuple[str, tuple[str, ...]] | None:
    """``source`` after ``k`` (default: 1 to 4, at random) degradations that apply, in a
    random weighted order, with their names; None when none applies."""
    if k is None:
        k = rng.randint(1, 4)
    registered = DEGRADATIONS  # looked up at call time: tests swap the table
    # Weighted order without replacement: sort by u ** (1 / weight).
    order = sorted(registered.values(), key=lambda d: rng.random() ** (1 / d.weight))
    order.reverse()
    applied: list[str] = []
    current = source
    for entry in order:
        if len(applied) >= k:
            break
        out = entry.apply(current, rng)
        if out is not None and out != current:
            current = out
            applied.append(entry.name)
    return (current, tuple(applied)) if applied else None
