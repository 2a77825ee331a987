"""Native records from JSONL, JSON and YAML, and every route through ``datasets``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from codealign.errors import InputError
from codealign.tasks import (
    AssertsSuite,
    CheckSuite,
    IOCase,
    IOSuite,
    PytestSuite,
    Task,
    load_tasks,
)

TEST_MUL = "from solution import mul\n\ndef test_mul():\n    assert mul(2, 3) == 6\n"


def native_rows() -> list[dict[str, Any]]:
    """One native record of each test-suite kind."""
    return [
        {
            "task_id": "check-add",
            "prompt": "def add(a, b):\n",
            "entry_point": "add",
            "tests": {
                "kind": "check",
                "code": "def check(candidate):\n    assert candidate(1, 2)\n",
            },
            "canonical_solution": "    return a + b\n",
            "metadata": {"difficulty": "easy"},
        },
        {
            "task_id": "asserts-sub",
            "prompt": "Write sub(a, b).",
            "prompt_style": "text",
            "entry_point": "sub",
            "tests": {
                "kind": "asserts",
                "asserts": ["assert sub(3, 1) == 2"],
                "setup": "import os",
            },
            "canonical_solution": "def sub(a, b):\n    return a - b\n",
        },
        {
            "task_id": "pytest-mul",
            "prompt": "def mul(a, b):\n",
            "entry_point": "mul",
            "tests": {
                "kind": "pytest",
                "files": {"test_mul.py": TEST_MUL, "data/cases.txt": "2 3 6\n"},
            },
        },
        {
            "task_id": "io-echo",
            "prompt": "Read a line and print it.",
            "prompt_style": "text",
            "entry_point": "main",
            "tests": {"kind": "io", "cases": [{"input": "hi\n", "output": "hi\n"}]},
        },
    ]


def check_native(tasks: list[Task]) -> None:
    check, asserts, pytest_task, io = tasks
    assert check.tests == CheckSuite(code="def check(candidate):\n    assert candidate(1, 2)\n")
    assert check.canonical_solution == "    return a + b\n"
    assert check.metadata == {"difficulty": "easy"}
    assert asserts.prompt_style == "text"
    assert asserts.tests == AssertsSuite(asserts=("assert sub(3, 1) == 2",), setup="import os")
    assert pytest_task.tests == PytestSuite(
        files=(("data/cases.txt", "2 3 6\n"), ("test_mul.py", TEST_MUL)), module="solution"
    )
    assert pytest_task.canonical_solution is None
    assert io.tests == IOSuite(cases=(IOCase(input="hi\n", output="hi\n"),))


def dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    """A Dataset of ``rows``; from_list takes its columns from the first row only."""
    columns = {key for row in rows for key in row}
    return datasets.Dataset.from_list([{k: row.get(k) for k in sorted(columns)} for row in rows])


@pytest.fixture(autouse=True)
def _quiet_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keep anything datasets caches inside the test's folder.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    datasets.disable_progress_bars()


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in native_rows()), encoding="utf-8")
    check_native(load_tasks(path))
    check_native(load_tasks(path, format="native"))


def test_yaml_list_and_mapping(tmp_path: Path) -> None:
    as_list = tmp_path / "tasks.yaml"
    as_list.write_text(yaml.safe_dump(native_rows()), encoding="utf-8")
    as_mapping = tmp_path / "tasks.yml"
    as_mapping.write_text(yaml.safe_dump({"tasks": native_rows()}), encoding="utf-8")
    check_native(load_tasks(as_list))
    check_native(load_tasks(as_mapping))


def test_json_mapping(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"tasks": native_rows()}), encoding="utf-8")
    check_native(load_tasks(path))


def test_save_to_disk(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    dataset(native_rows()).save_to_disk(str(saved))
    check_native(load_tasks(saved))
    arrow = next(saved.glob("*.arrow"))
    check_native(load_tasks(arrow))


def test_dataset_dict_prefers_test_split(tmp_path: Path) -> None:
    rows = native_rows()
    saved = tmp_path / "dict"
    splits = {"train": rows[:1], "test": rows}
    datasets.DatasetDict({name: dataset(part) for name, part in splits.items()}).save_to_disk(
        str(saved)
    )
    check_native(load_tasks(saved))


def test_dataset_dict_without_test_split_is_an_error(tmp_path: Path) -> None:
    rows = native_rows()
    saved = tmp_path / "dict"
    datasets.DatasetDict({"train": dataset(rows), "dev": dataset(rows)}).save_to_disk(str(saved))
    with pytest.raises(InputError, match="none is 'test'; splits: dev, train"):
        load_tasks(saved)


def test_parquet_of_humaneval_rows(tmp_path: Path) -> None:
    row = {
        "task_id": "HumanEval/0",
        "prompt": "def add(a, b):\n",
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
        "entry_point": "add",
    }
    path = tmp_path / "he.parquet"
    dataset([row]).to_parquet(str(path))
    (task,) = load_tasks(path)
    assert task.task_id == "HumanEval/0"
    assert isinstance(task.tests, CheckSuite)


def test_hf_spec_with_local_folder_and_split(tmp_path: Path) -> None:
    folder = tmp_path / "hub-like"
    folder.mkdir()
    (folder / "tasks.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in native_rows()), encoding="utf-8"
    )
    check_native(load_tasks(f"hf:{folder}:train"))
    check_native(load_tasks(f"hf:{folder}"))  # the only split


def test_dataset_errors_name_the_row(tmp_path: Path) -> None:
    rows = native_rows()
    rows[2]["tests"]["files"] = {"../escape.py": "x = 1\n", "test_mul.py": TEST_MUL}
    saved = tmp_path / "bad"
    dataset(rows).save_to_disk(str(saved))
    with pytest.raises(InputError) as info:
        load_tasks(saved)
    assert str(info.value).startswith(f"{saved}: row 2: task 'pytest-mul': pytest file path")


def test_a_pytest_suite_chooses_where_it_is_judged(tmp_path: Path) -> None:
    row = native_rows()[2]
    assert row["tests"]["kind"] == "pytest"
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({**row, "tests": {**row["tests"], "judge": "inside"}}) + "\n")
    (task,) = load_tasks(str(path))
    assert isinstance(task.tests, PytestSuite) and task.tests.judge == "inside"
    path.write_text(json.dumps({**row, "tests": {**row["tests"], "judge": "sideways"}}) + "\n")
    with pytest.raises(InputError, match="pytest judge must be 'outside' or 'inside'"):
        load_tasks(str(path))
