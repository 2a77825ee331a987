"""Degradations: each one changes the text but keeps the behaviour; ``degrade`` composes
them deterministically."""

from __future__ import annotations

import ast
import copy
import random
from dataclasses import dataclass
from typing import Any

import pytest

from codealign.readability.degrade import names, registry
from codealign.readability.degrade.registry import degrade
from codealign.readability.degrade.source import compiles
from codealign.tasks import load_tasks
from codealign.tasks.tiny import tiny_tasks
from tests.readability.checks import tiny_passes


@dataclass(frozen=True)
class Snippet:
    source: str
    entry: str
    inputs: tuple[tuple[Any, ...], ...]


SNIPPETS = (
    Snippet(
        '''from typing import List

LIMIT = 10  # the largest value we keep


def clip_all(values: List[int], scale: int = 2) -> List[int]:
    """Scale each value and cap it at LIMIT."""
    result: List[int] = []
    for value in values:
        scaled = value * scale  # stretch first
        if scaled > LIMIT and value > 0:
            scaled = LIMIT
        result.append(scaled)
    return result
''',
        "clip_all",
        (([1, 2, 3],), ([5, -7, 0], 3), ([],), ([9, 4, 11], 1)),
    ),
    Snippet(
        '''def is_sorted(items: list[int]) -> bool:
    """Whether ``items`` never decreases."""
    for i in range(1, len(items)):
        if items[i - 1] > items[i]:
            return False
    return True
''',
        "is_sorted",
        (([1, 2, 2, 5],), ([3, 1],), ([],), ([7],)),
    ),
    Snippet(
        '''def count_words(text: str, minimum: int) -> int:
    """How many words of ``text`` have at least ``minimum`` letters."""
    if not text:
        return 0
    total = 0
    for word in text.split():
        long_enough = len(word) >= minimum
        if long_enough:
            total += 1
    return total
''',
        "count_words",
        (("the quick brown fox", 4), ("", 1), ("a bb ccc", 2)),
    ),
    Snippet(
        '''SECONDS_PER_DAY = 24 * 60 * 60


def days_to_seconds(days: float) -> float:
    """The number of seconds in ``days`` days."""
    return days * SECONDS_PER_DAY
''',
        "days_to_seconds",
        ((1,), (0.5,), (-2,)),
    ),
    Snippet(
        '''def has_prefix(word: str, prefix: str) -> bool:
    """Whether ``word`` starts with ``prefix``, ignoring case."""
    return word.lower().startswith(prefix.lower())
''',
        "has_prefix",
        (("Python", "py"), ("java", "py"), ("", "")),
    ),
    Snippet(
        '''def running_max(numbers: list[int]) -> list[int]:
    """The largest number so far, at each position."""

    def better(current: int, candidate: int) -> int:
        return candidate if candidate > current else current

    best = numbers[0] if numbers else 0
    out = []
    for index, number in enumerate(numbers):
        best = better(best, number)
        out.append(best + index - index)
    return out
''',
        "running_max",
        (([3, 1, 4, 1, 5],), ([],), ([-2, -5],)),
    ),
)


def _behaviour(source: str, entry: str, inputs: tuple[tuple[Any, ...], ...]) -> list[str]:
    """What ``entry`` returns (or raises) on each input; trusted snippets, run on the host."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<snippet>", "exec"), namespace)
    outcomes = []
    for args in inputs:
        try:
            outcomes.append(repr(namespace[entry](*copy.deepcopy(args))))
        except Exception as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


@pytest.mark.parametrize("name", sorted(registry.DEGRADATIONS))
def test_each_degradation_changes_text_but_not_behaviour(name: str) -> None:
    degradation = registry.DEGRADATIONS[name].apply
    applied = 0
    for snippet in SNIPPETS:
        expected = _behaviour(snippet.source, snippet.entry, snippet.inputs)
        for seed in range(4):
            out = degradation(snippet.source, random.Random(seed))
            if out is None:
                continue
            applied += 1
            assert out != snippet.source
            assert compiles(out), out
            assert f"def {snippet.entry}(" in out or f"def {snippet.entry} (" in out
            assert _behaviour(out, snippet.entry, snippet.inputs) == expected, out
    assert applied, f"{name} applied to none of the snippets"


def test_degradations_that_do_not_apply_return_none() -> None:
    bare = "def f(x):\n    return x\n"
    rng = random.Random(0)
    for name in ("strip_docstrings", "strip_comments", "strip_type_hints", "magic_numbers"):
        assert registry.DEGRADATIONS[name].apply(bare, rng) is None, name
    assert degrade("x = (", rng) is None  # not Python: nothing applies


def test_rename_keeps_entry_point_module_names_and_keyword_arguments() -> None:
    source = """LIMIT = 3


def helper(value, scale):
    return value * scale


def entry(numbers, factor):
    total = 0
    for number in numbers:
        total += helper(number, scale=factor)
    return min(total, LIMIT * len(numbers))
"""
    renamed_any = False
    for seed in range(10):
        out = names.rename(source, random.Random(seed))
        assert out is not None
        tree = ast.parse(out)
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert set(functions) == {"helper", "entry"}
        assert "LIMIT = 3" in out and "LIMIT *" in out
        assert "scale=" in out  # a keyword argument's parameter keeps its name
        assert [a.arg for a in functions["helper"].args.args][1] == "scale"
        renamed_any |= [a.arg for a in functions["entry"].args.args] != ["numbers", "factor"]
        inputs: tuple[tuple[Any, ...], ...] = (([1, 2], 1), ([5, 5, 5], 2), ([], 4))
        assert _behaviour(out, "entry", inputs) == _behaviour(source, "entry", inputs)
    assert renamed_any


def test_degrade_is_deterministic_and_records_what_it_did() -> None:
    task = tiny_tasks("train")[0]
    program = task.canonical_program()
    assert program is not None
    lengths = set()
    for seed in range(30):
        first = degrade(program, random.Random(seed))
        second = degrade(program, random.Random(seed))
        assert first is not None and first == second
        text, names = first
        assert text != program and compiles(text)
        assert 1 <= len(names) <= 4 and set(names) <= set(registry.DEGRADATIONS)
        lengths.add(len(names))
        limited = degrade(program, random.Random(seed), k=1)
        assert limited is not None and len(limited[1]) == 1
    assert lengths == {1, 2, 3, 4}


def test_builtin_programs_degrade_to_compiling_equivalent_code() -> None:
    """Every degradation on tiny programs (checked on the host: trusted generated code) and
    on HumanEval's canonical solutions (compiled only; the sandbox test runs some)."""
    tiny = tiny_tasks("train")[::8]
    humaneval = load_tasks("humaneval")
    for name, entry in registry.DEGRADATIONS.items():
        for i, task in enumerate(tiny + humaneval):
            program = task.canonical_program()
            assert program is not None
            out = entry.apply(program, random.Random(i))
            if out is None:
                continue
            assert out != program and compiles(out), (name, task.task_id)
            if task in tiny:
                assert tiny_passes(task, out), (name, out)
