"""Proposed pairs for the labelling tests: a tiny task's canonical program against the
same program with its names spelled out, both correct."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.tasks.tiny import tiny_tasks


def make_pairs(path: Path, n: int) -> Path:
    rows = []
    for i, task in enumerate(tiny_tasks("train")[:n]):
        program = task.prompt + (task.canonical_solution or "")
        other = program.replace("    return", "    result =", 1) + "    return result\n"
        rows.append({"pair_id": f"p{i:02d}", "task_id": task.task_id, "prompt": task.prompt,
                     "a": program, "b": other})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def pairs_file(tmp_path: Path) -> Path:
    return make_pairs(tmp_path / "pairs.jsonl", 6)
