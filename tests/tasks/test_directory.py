"""A directory of custom pytest suites, one folder per task."""

from __future__ import annotations

from pathlib import Path

import pytest

from codealign.errors import InputError
from codealign.tasks import PytestSuite, load_tasks

TEST_PARSE = (
    "import json, pathlib\nfrom solution import parse\n\n"
    "def test_cases():\n"
    "    cases = json.loads((pathlib.Path(__file__).parent / 'data/cases.json').read_text())\n"
    "    assert all(parse(a) == b for a, b in cases)\n"
)


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def test_suites_with_conftest_and_data(tmp_path: Path) -> None:
    _write(
        tmp_path / "b_parse",
        {
            "task.yaml": "entry_point: parse\nmetadata:\n  source: team\n",
            "prompt.py": "def parse(text: str) -> int:\n",
            "solution.py": "def parse(text: str) -> int:\n    return int(text)\n",
            "conftest.py": "import sys\n",
            "test_parse.py": TEST_PARSE,
            "data/cases.json": '[["1", 1]]',
            ".hidden": "skipped",
            "__pycache__/x.pyc": "skipped",
        },
    )
    _write(
        tmp_path / "a_text",
        {
            "task.json": '{"task_id": "custom/text", "prompt": "Write shout(s).", '
            '"entry_point": "shout", "module": "impl", "prompt_style": "text"}',
            "impl_test.py": "from impl import shout\n\ndef test_it():\n    assert shout('a')\n",
        },
    )
    (tmp_path / "README.md").write_text("not a task", encoding="utf-8")
    text_task, parse_task = load_tasks(tmp_path)

    assert text_task.task_id == "custom/text"
    assert text_task.prompt_style == "text"
    assert text_task.prompt == "Write shout(s)."
    assert isinstance(text_task.tests, PytestSuite) and text_task.tests.module == "impl"

    assert parse_task.task_id == "b_parse"
    assert parse_task.prompt == "def parse(text: str) -> int:\n"
    assert parse_task.prompt_style == "code"
    assert parse_task.canonical_solution == "def parse(text: str) -> int:\n    return int(text)\n"
    assert parse_task.metadata == {"source": "team"}
    assert parse_task.tests == PytestSuite(
        files=(
            ("conftest.py", "import sys\n"),
            ("data/cases.json", '[["1", 1]]'),
            ("test_parse.py", TEST_PARSE),
        ),
        module="solution",
    )


def test_markdown_prompt_is_text_style(tmp_path: Path) -> None:
    _write(
        tmp_path / "t",
        {
            "task.yaml": "entry_point: shout\n",
            "prompt.md": "Write `shout(s)` returning `s.upper()`.\n",
            "test_shout.py": "from solution import shout\n\ndef test_it(): assert shout('a')\n",
        },
    )
    (task,) = load_tasks(tmp_path)
    assert task.prompt_style == "text"
    assert task.canonical_solution is None


def test_folder_without_test_files_is_an_error(tmp_path: Path) -> None:
    _write(
        tmp_path / "no_tests",
        {"task.yaml": "entry_point: f\nprompt: 'def f():\n'\n", "helper.py": "x = 1\n"},
    )
    with pytest.raises(InputError) as info:
        load_tasks(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'no_tests'}: task 'no_tests': ")
    assert "no test file (test_*.py or *_test.py)" in message


def test_missing_entry_point_and_prompt(tmp_path: Path) -> None:
    _write(tmp_path / "t", {"task.yaml": "prompt: 'def f(): pass'\n", "test_f.py": ""})
    with pytest.raises(InputError, match="task 't': missing required field 'entry_point'"):
        load_tasks(tmp_path)
    _write(tmp_path / "t", {"task.yaml": "entry_point: f\n"})
    with pytest.raises(InputError, match="missing prompt: give 'prompt' in the task file"):
        load_tasks(tmp_path)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no tasks found"):
        load_tasks(tmp_path)


def test_oversized_file_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "t", {"task.yaml": "entry_point: f\nprompt: 'def f(): pass'\n"})
    (tmp_path / "t" / "test_big.py").write_text("#" * ((1 << 20) + 1), encoding="utf-8")
    with pytest.raises(InputError, match=r"test_big\.py: file is too large"):
        load_tasks(tmp_path)
