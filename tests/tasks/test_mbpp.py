"""MBPP rows in the original and sanitized layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codealign.errors import InputError
from codealign.tasks import AssertsSuite, load_tasks
from codealign.tasks.mbpp import find_entry_point

ORIGINAL_11: dict[str, Any] = {
    "task_id": 11,
    "text": "Write a python function to remove first and last occurrence of a given character "
    "from the string.",
    "code": "def remove_Occ(s,ch): \r\n    for i in range(len(s)): \r\n        if (s[i] == ch): "
    "\r\n            s = s[0 : i] + s[i + 1:] \r\n            break\r\n    for i in "
    "range(len(s) - 1,-1,-1):  \r\n        if (s[i] == ch): \r\n            s = s[0 : i] + "
    "s[i + 1:] \r\n            break\r\n    return s ",
    "test_list": [
        'assert remove_Occ("hello","l") == "heo"',
        'assert remove_Occ("abcda","a") == "bcd"',
        'assert remove_Occ("PHP","P") == "H"',
    ],
    "test_setup_code": "",
    "challenge_test_list": [
        'assert remove_Occ("hellolloll","l") == "helollol"',
        'assert remove_Occ("","l") == ""',
    ],
}

SANITIZED_2: dict[str, Any] = {
    "source_file": "Benchmark Questions Verification V2.ipynb",
    "task_id": 2,
    "prompt": "Write a function to find the shared elements from the given two lists.",
    "code": "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
    "set(test_tup2))\n  return (res) ",
    "test_imports": [],
    "test_list": [
        "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))",
        "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))",
    ],
}

SANITIZED_139: dict[str, Any] = {
    "source_file": "Benchmark Questions Verification V2.ipynb",
    "task_id": 139,
    "prompt": "Write a function to find the circumference of a circle.",
    "code": "def circle_circumference(r):\r\n  perimeter=2*3.1415*r\r\n  return perimeter",
    "test_imports": ["import math"],
    "test_list": [
        "assert math.isclose(circle_circumference(10), 62.830000000000005, rel_tol=0.001)"
    ],
}


def _write(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_original_row(tmp_path: Path) -> None:
    (task,) = load_tasks(_write(tmp_path, [ORIGINAL_11]))
    assert task.task_id == "Mbpp/11"
    assert task.entry_point == "remove_Occ"
    assert task.prompt_style == "text"
    assert task.tests == AssertsSuite(asserts=tuple(ORIGINAL_11["test_list"]), setup="")
    assert task.canonical_solution == ORIGINAL_11["code"]
    assert task.prompt.startswith("You are an expert Python programmer")
    assert ORIGINAL_11["text"] in task.prompt
    assert all(test in task.prompt for test in ORIGINAL_11["test_list"])
    assert task.metadata["description"] == ORIGINAL_11["text"]
    assert task.metadata["challenge_test_list"] == ORIGINAL_11["challenge_test_list"]


def test_sanitized_rows_skip_wrapping_calls(tmp_path: Path) -> None:
    similar, circle = load_tasks(_write(tmp_path, [SANITIZED_2, SANITIZED_139]))
    assert similar.task_id == "Mbpp/2"
    assert similar.entry_point == "similar_elements"  # not `set`, which wraps the call
    assert similar.metadata["source_file"] == SANITIZED_2["source_file"]
    assert circle.entry_point == "circle_circumference"
    assert isinstance(circle.tests, AssertsSuite)
    assert circle.tests.setup == "import math"
    assert "math.isclose(circle_circumference(10)" in circle.prompt


def test_string_ids_and_setup_code_are_kept(tmp_path: Path) -> None:
    row = dict(ORIGINAL_11, task_id="Mbpp/custom", test_setup_code="import re")
    (task,) = load_tasks(_write(tmp_path, [row]), format="mbpp")
    assert task.task_id == "Mbpp/custom"
    assert isinstance(task.tests, AssertsSuite)
    assert task.tests.setup == "import re"


def test_entry_point_must_be_defined_in_code(tmp_path: Path) -> None:
    row = dict(SANITIZED_2, code="def other(a, b):\n    return a\n")
    with pytest.raises(InputError, match=r"mbpp\.jsonl:1: task 2: cannot find the entry point"):
        load_tasks(_write(tmp_path, [row]))


def test_find_entry_point_in_source_order() -> None:
    code = "def outer(x):\n    return x\ndef inner(x):\n    return x\n"
    assert find_entry_point(("assert outer(inner(1)) == 1",), code) == "outer"
