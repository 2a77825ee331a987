"""Readability pairs: every degradation keeps behaviour; the sandbox drops pairs that don't."""

from __future__ import annotations

import ast
import copy
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from codealign.execution import ExecutionConfig
from codealign.jsonl import read_jsonl, write_jsonl
from codealign.tasks import AssertsSuite, Task, load_tasks
from codealign.tasks.tiny import tiny_tasks
from codealign.training import readability_data as rd


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


@pytest.mark.parametrize("name", sorted(rd.DEGRADATIONS))
def test_each_degradation_changes_text_but_not_behaviour(name: str) -> None:
    degradation = rd.DEGRADATIONS[name]
    applied = 0
    for snippet in SNIPPETS:
        expected = _behaviour(snippet.source, snippet.entry, snippet.inputs)
        for seed in range(4):
            out = degradation(snippet.source, random.Random(seed))
            if out is None:
                continue
            applied += 1
            assert out != snippet.source
            assert rd.compiles(out), out
            assert f"def {snippet.entry}(" in out or f"def {snippet.entry} (" in out
            assert _behaviour(out, snippet.entry, snippet.inputs) == expected, out
    assert applied, f"{name} applied to none of the snippets"


def test_degradations_that_do_not_apply_return_none() -> None:
    bare = "def f(x):\n    return x\n"
    rng = random.Random(0)
    for name in ("strip_docstrings", "strip_comments", "strip_type_hints", "magic_numbers"):
        assert rd.DEGRADATIONS[name](bare, rng) is None, name
    assert rd.degrade("x = (", rng) is None  # not Python: nothing applies


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
        out = rd.rename(source, random.Random(seed))
        assert out is not None
        tree = ast.parse(out)
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert set(functions) == {"helper", "entry"}
        assert "LIMIT = 3" in out and "LIMIT *" in out
        assert "scale=" in out  # a keyword argument's parameter keeps its name
        assert [a.arg for a in functions["helper"].args.args][1] == "scale"
        renamed_any |= [a.arg for a in functions["entry"].args.args] != ["numbers", "factor"]
        inputs = (([1, 2], 1), ([5, 5, 5], 2), ([], 4))
        assert _behaviour(out, "entry", inputs) == _behaviour(source, "entry", inputs)
    assert renamed_any


def test_degrade_is_deterministic_and_records_what_it_did() -> None:
    task = tiny_tasks("train")[0]
    program = task.canonical_program()
    assert program is not None
    lengths = set()
    for seed in range(30):
        first = rd.degrade(program, random.Random(seed))
        second = rd.degrade(program, random.Random(seed))
        assert first is not None and first == second
        text, names = first
        assert text != program and rd.compiles(text)
        assert 1 <= len(names) <= 4 and set(names) <= set(rd.DEGRADATIONS)
        lengths.add(len(names))
        limited = rd.degrade(program, random.Random(seed), k=1)
        assert limited is not None and len(limited[1]) == 1
    assert lengths == {1, 2, 3, 4}


def _tiny_passes(task: Task, program: str) -> bool:
    assert isinstance(task.tests, AssertsSuite)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(program, "<tiny>", "exec"), namespace)
        for line in task.tests.asserts:
            exec(line, namespace)
    except Exception:
        return False
    return True


def test_builtin_programs_degrade_to_compiling_equivalent_code() -> None:
    """Every degradation on tiny programs (checked on the host: trusted generated code) and
    on HumanEval's canonical solutions (compiled only; the sandbox test runs some)."""
    tiny = tiny_tasks("train")[::8]
    humaneval = load_tasks("humaneval")
    for name, degradation in rd.DEGRADATIONS.items():
        for i, task in enumerate(tiny + humaneval):
            program = task.canonical_program()
            assert program is not None
            out = degradation(program, random.Random(i))
            if out is None:
                continue
            assert out != program and rd.compiles(out), (name, task.task_id)
            if task in tiny:
                assert _tiny_passes(task, out), (name, out)


def test_labels_and_records(tmp_path: Path) -> None:
    tiny = tiny_tasks("heldout")[0]
    humaneval = load_tasks("humaneval")[3]
    assert rd.source_label(tiny) == "tiny"
    assert rd.family_label(tiny) == tiny.metadata["template"]
    assert (rd.source_label(humaneval), rd.family_label(humaneval)) == ("humaneval", "HumanEval/3")
    pair = rd.ReadabilityPair("p", "c", "r", "tiny", "clamp", ("rename", "cram"), "tiny/0001")
    records = rd.pair_records([pair])
    assert records == [
        {
            "prompt": "p",
            "chosen": "c",
            "rejected": "r",
            "source": "tiny",
            "family": "clamp",
            "degradations": ["rename", "cram"],
            "task_id": "tiny/0001",
        }
    ]
    write_jsonl(tmp_path / "pairs.jsonl", records)
    assert [r for _, r in read_jsonl(tmp_path / "pairs.jsonl")] == records
    assert json.loads(json.dumps(records)) == records
    assert rd.DATA_VERSION >= 1


def _sandbox_tasks() -> list[Task]:
    return tiny_tasks("train")[:20] + load_tasks("humaneval")[:10]


def _consistent(counts: dict[str, int]) -> bool:
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    return counts["generated"] == counts["kept"] + dropped


@pytest.mark.sandbox
def test_generate_pairs_keeps_only_equivalent_pairs(bwrap_config: ExecutionConfig) -> None:
    tasks = _sandbox_tasks()
    pairs, counts = rd.generate_pairs(tasks, per_task=2, seed=3, config=bwrap_config)
    assert _consistent(counts) and counts["tasks"] == len(tasks)
    assert counts["kept"] == len(pairs) >= 45
    assert {p.source for p in pairs} == {"tiny", "humaneval"}
    by_id = {t.task_id: t for t in tasks}
    for pair in pairs:
        task = by_id[pair.task_id]
        assert pair.prompt == task.prompt and pair.chosen == task.canonical_program()
        assert pair.rejected != pair.chosen and rd.compiles(pair.rejected)
        assert pair.family == rd.family_label(task) and pair.degradations
        if pair.source == "tiny":
            assert _tiny_passes(task, pair.rejected)
    # Deterministic for a seed: the same rejected programs again.
    again, _ = rd.generate_pairs(tasks[:5], per_task=2, seed=3, config=bwrap_config)
    first_five = {t.task_id for t in tasks[:5]}
    assert [p.rejected for p in again] == [p.rejected for p in pairs if p.task_id in first_five]


def _breaks(source: str, rng: random.Random) -> str | None:
    """Not a readability degradation: returns None instead of the answer."""
    return source.replace("return ", "return None  # ", 1) if "return " in source else None


@pytest.mark.sandbox
def test_non_equivalent_pairs_are_dropped_and_counted(
    bwrap_config: ExecutionConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = tiny_tasks("train")[:12]
    monkeypatch.setattr(rd, "DEGRADATIONS", {"breaks": _breaks})
    pairs, counts = rd.generate_pairs(tasks, per_task=1, config=bwrap_config)
    assert pairs == []
    assert counts["generated"] == counts["dropped_not_equivalent"] == len(tasks)

    monkeypatch.setattr(rd, "DEGRADATIONS", {"breaks": _breaks, "rename": rd.rename})
    pairs, counts = rd.generate_pairs(tasks, per_task=3, config=bwrap_config)
    assert _consistent(counts) and counts["dropped_not_equivalent"] > 0
    assert pairs and all(p.degradations == ("rename",) for p in pairs)
