"""Every malformed input gives an InputError whose message names the place and the problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from codealign.errors import InputError
from codealign.tasks import load_tasks


def _row(task_id: str = "t", **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": task_id,
        "prompt": "def f(x):\n",
        "entry_point": "f",
        "tests": {"kind": "asserts", "asserts": ["assert f(1) == 1"]},
    }
    row.update(changes)
    return row


def _jsonl(tmp_path: Path, *lines: dict[str, Any] | str) -> Path:
    path = tmp_path / "tasks.jsonl"
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def _message(spec: str | Path, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        load_tasks(spec, **kwargs)
    return str(info.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, _row("a"), '{"task_id": "b", ')
    assert _message(path).startswith(f"{path}:2: malformed JSON")


def test_missing_field(tmp_path: Path) -> None:
    row = _row()
    del row["entry_point"]
    path = _jsonl(tmp_path, row)
    assert _message(path) == f"{path}:1: task 't': missing required field 'entry_point'"


def test_missing_humaneval_test_field(tmp_path: Path) -> None:
    row = {"task_id": "H/0", "prompt": "def f():\n", "canonical_solution": "", "entry_point": "f"}
    path = _jsonl(tmp_path, row)
    assert _message(path) == f"{path}:1: task 'H/0': missing required field 'test'"


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, _row("a"), _row("b"), _row("a"))
    assert _message(path) == f"{path}:3: duplicate task id 'a', first defined at {path}:1"


def test_unknown_format_lists_formats(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, {"id": 1, "question": "?"})
    message = _message(path)
    assert message.startswith(f"{path}:1: unknown task format: the fields (id, question)")
    assert all(name in message for name in ("humaneval (", "mbpp (", "native ("))


def test_unknown_format_argument() -> None:
    assert "unknown format 'apps'; expected one of humaneval, mbpp, native" in _message(
        "humaneval", format="apps"
    )


def test_prompt_must_define_entry_point(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, _row(prompt="def g(x):\n"))
    assert _message(path) == f"{path}:1: task 't': prompt does not define entry point 'f'"


def test_text_solution_must_define_entry_point(tmp_path: Path) -> None:
    row = _row(prompt="Write f.", prompt_style="text", canonical_solution="def g(): pass\n")
    path = _jsonl(tmp_path, row)
    assert "task 't': canonical solution does not define entry point 'f'" in _message(path)


def test_empty_ids_are_rejected(tmp_path: Path) -> None:
    assert "task_id must not be empty" in _message(_jsonl(tmp_path, _row("")))
    path = _jsonl(tmp_path, _row(entry_point=""))
    assert "task 't': entry_point must not be empty" in _message(path)


def test_unknown_builtin_name_lists_builtins() -> None:
    message = _message("no-such-set")
    assert message.startswith("no-such-set: no such file or directory")
    assert "built-in: humaneval" in message


def test_bad_tests_kind(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, _row("x", tests={"kind": "foo"}))
    assert _message(path) == (
        f"{path}:1: task 'x': tests.kind must be one of check, asserts, pytest, io, got 'foo'"
    )


@pytest.mark.parametrize("bad", ["../escape.py", "/abs/test_x.py", "a/../../test_x.py"])
def test_pytest_path_must_stay_inside(tmp_path: Path, bad: str) -> None:
    tests = {"kind": "pytest", "files": {bad: "x = 1\n", "test_ok.py": "def test(): pass\n"}}
    path = _jsonl(tmp_path, _row(tests=tests))
    assert f"task 't': pytest file path '{bad}' must be relative and must not contain '..'" in (
        _message(path)
    )


def test_pytest_file_must_not_shadow_module(tmp_path: Path) -> None:
    files = {"solution.py": "", "test_ok.py": "def test(): pass\n"}
    path = _jsonl(tmp_path, _row(tests={"kind": "pytest", "files": files}))
    assert "pytest file 'solution.py' collides with the candidate module 'solution'" in (
        _message(path)
    )


def test_wrong_field_types(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, _row(tests={"kind": "asserts", "asserts": "assert f(1)"}))
    assert "tests.asserts must be a list of strings, got str" in _message(path)
    path = _jsonl(tmp_path, _row(tests={"kind": "io", "cases": [{"input": 1, "output": ""}]}))
    assert "tests.cases[0].input must be a string, got int" in _message(path)
    path = _jsonl(tmp_path, _row(tests={"kind": "check", "code": "assert True"}))
    assert "tests.code does not define check(candidate)" in _message(path)
    path = _jsonl(tmp_path, _row(prompt_style="prose"))
    assert "prompt_style must be one of code, text, got 'prose'" in _message(path)
    path = _jsonl(tmp_path, _row(canonical_soluton="typo"))
    assert "task has unknown field(s) 'canonical_soluton'" in _message(path)


def test_yaml_errors_name_index_and_task(tmp_path: Path) -> None:
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump({"tasks": [_row("a"), _row("b", tests={"kind": "x"})]}))
    assert _message(path).startswith(f"{path}: index 1: task 'b': tests.kind must be one of")
    path.write_text(yaml.safe_dump([_row("a"), _row("a")]))
    assert _message(path) == (
        f"{path}: index 1: duplicate task id 'a', first defined at {path} index 0"
    )
    path.write_text("tasks: [\n  {a: 1\n")
    assert _message(path).startswith(f"{path}:3: malformed YAML")


def test_malformed_json_document(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_text('[\n{"task_id": }\n]')
    assert _message(path).startswith(f"{path}:2: malformed JSON")
    path.write_text('{"rows": []}')
    assert "expected a list of tasks or a mapping with 'tasks', got dict" in _message(path)


def test_empty_files_have_no_tasks(tmp_path: Path) -> None:
    assert _message(_jsonl(tmp_path)) == f"{tmp_path / 'tasks.jsonl'}: no tasks found"
    path = tmp_path / "tasks.yaml"
    path.write_text("")
    assert _message(path) == f"{path}: no tasks found"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "tasks.csv"
    path.write_text("a,b\n")
    assert "unsupported file type; expected .jsonl, .jsonl.gz, .json" in _message(path)
