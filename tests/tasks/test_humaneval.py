"""The built-in HumanEval set and HumanEval-format files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

from codealign.tasks import BUILTIN_TASK_SETS, CheckSuite, load_tasks
from codealign.tasks.humaneval import humaneval_data_path
from codealign.tasks.model import defines


def test_builtin_humaneval_has_164_check_tasks() -> None:
    tasks = load_tasks("humaneval")
    assert len(tasks) == 164
    assert tasks[0].task_id == "HumanEval/0"
    assert "humaneval" in BUILTIN_TASK_SETS
    for task in tasks:
        assert isinstance(task.tests, CheckSuite)
        assert task.prompt_style == "code"
        assert defines(task.prompt, task.entry_point)
        assert task.canonical_solution is not None


def test_gz_and_plain_copies_load_the_same(tmp_path: Path) -> None:
    builtin = load_tasks("humaneval")
    gz_copy = tmp_path / "HumanEval.jsonl.gz"
    shutil.copy(humaneval_data_path(), gz_copy)
    plain = tmp_path / "HumanEval.jsonl"
    with gzip.open(gz_copy, "rt", encoding="utf-8") as src:
        plain.write_text(src.read(), encoding="utf-8")
    assert load_tasks(gz_copy) == builtin
    assert load_tasks(str(plain)) == builtin


def test_canonical_program_runs() -> None:
    task = load_tasks("humaneval")[0]
    namespace: dict[str, object] = {}
    exec(task.canonical_program() or "", namespace)
    exec(task.tests.code if isinstance(task.tests, CheckSuite) else "", namespace)
    namespace["check"](namespace[task.entry_point])  # type: ignore[operator]


def test_evalplus_like_extra_fields_go_to_metadata(tmp_path: Path) -> None:
    row: dict[str, Any] = {
        "task_id": "HumanEval/0",
        "prompt": "def add(a, b):\n",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
        "entry_point": "add",
        "base_input": [[1, 2]],
        "atol": 0,
    }
    path = tmp_path / "plus.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    (task,) = load_tasks(path)
    assert task.metadata == {"base_input": [[1, 2]], "atol": 0}
    assert task.tests == CheckSuite(code=row["test"])
    assert task.canonical_solution == row["canonical_solution"]


def test_json_list_of_humaneval_rows(tmp_path: Path) -> None:
    rows = [
        {
            "task_id": f"T/{i}",
            "prompt": f"def f{i}():\n",
            "canonical_solution": "    return 1\n",
            "test": "def check(candidate):\n    assert candidate() == 1\n",
            "entry_point": f"f{i}",
        }
        for i in range(3)
    ]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert [t.task_id for t in load_tasks(path)] == ["T/0", "T/1", "T/2"]
