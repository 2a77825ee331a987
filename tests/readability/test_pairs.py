"""Readability pairs: labels and records, and the sandbox keeps only equivalent pairs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from codealign.execution import ExecutionConfig
from codealign.jsonl import read_jsonl, write_jsonl
from codealign.readability.degrade import names, registry
from codealign.readability.degrade.registry import Degradation
from codealign.readability.degrade.source import compiles
from codealign.readability.pairs import (
    DATA_VERSION,
    ReadabilityPair,
    family_label,
    generate_pairs,
    pair_records,
    source_label,
)
from codealign.tasks import Task, load_tasks
from codealign.tasks.tiny import tiny_tasks
from tests.readability.checks import tiny_passes


def test_labels_and_records(tmp_path: Path) -> None:
    tiny = tiny_tasks("heldout")[0]
    humaneval = load_tasks("humaneval")[3]
    assert source_label(tiny) == "tiny"
    assert family_label(tiny) == tiny.metadata["template"]
    assert (source_label(humaneval), family_label(humaneval)) == ("humaneval", "HumanEval/3")
    pair = ReadabilityPair("p", "c", "r", "tiny", "clamp", ("rename", "cram"), "tiny/0001")
    records = pair_records([pair])
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
    assert DATA_VERSION >= 1


def _sandbox_tasks() -> list[Task]:
    return tiny_tasks("train")[:20] + load_tasks("humaneval")[:10]


def _consistent(counts: dict[str, int]) -> bool:
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped_"))
    return counts["generated"] == counts["kept"] + dropped


@pytest.mark.sandbox
def test_generate_pairs_keeps_only_equivalent_pairs(bwrap_config: ExecutionConfig) -> None:
    tasks = _sandbox_tasks()
    pairs, counts = generate_pairs(tasks, per_task=2, seed=3, config=bwrap_config)
    assert _consistent(counts) and counts["tasks"] == len(tasks)
    assert counts["kept"] == len(pairs) >= 45
    assert {p.source for p in pairs} == {"tiny", "humaneval"}
    by_id = {t.task_id: t for t in tasks}
    for pair in pairs:
        task = by_id[pair.task_id]
        assert pair.prompt == task.prompt and pair.chosen == task.canonical_program()
        assert pair.rejected != pair.chosen and compiles(pair.rejected)
        assert pair.family == family_label(task) and pair.degradations
        if pair.source == "tiny":
            assert tiny_passes(task, pair.rejected)
    # Deterministic for a seed: the same rejected programs again.
    again, _ = generate_pairs(tasks[:5], per_task=2, seed=3, config=bwrap_config)
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
    monkeypatch.setattr(registry, "DEGRADATIONS", registry.table([Degradation("breaks", _breaks)]))
    pairs, counts = generate_pairs(tasks, per_task=1, config=bwrap_config)
    assert pairs == []
    assert counts["generated"] == counts["dropped_not_equivalent"] == len(tasks)

    both = [Degradation("breaks", _breaks), Degradation("rename", names.rename)]
    monkeypatch.setattr(registry, "DEGRADATIONS", registry.table(both))
    pairs, counts = generate_pairs(tasks, per_task=3, config=bwrap_config)
    assert _consistent(counts) and counts["dropped_not_equivalent"] > 0
    assert pairs and all(p.degradations == ("rename",) for p in pairs)
