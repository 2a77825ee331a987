"""A directory of custom test suites: one sub-folder per task, holding its own pytest files.

::

    suites/
      parse_date/
        task.yaml          # entry_point (required), task_id, prompt, module, prompt_style,
                           # judge: outside (default) | inside, ...
        prompt.md          # or prompt.py / prompt.txt, or `prompt:` in task.yaml
        solution.py        # optional reference solution
        conftest.py        # every other file travels with the tests
        test_parse.py
        data/cases.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from codealign.errors import InputError
from codealign.tasks.model import PromptStyle, Task
from codealign.tasks.native import (
    RowError,
    as_mapping,
    optional_str,
    prompt_style,
    pytest_suite,
    reject_unknown,
    require_str,
)

TASK_FILES = ("task.yaml", "task.yml", "task.json")
PROMPT_FILES = ("prompt.py", "prompt.md", "prompt.txt")
SOLUTION_FILE = "solution.py"
MAX_FILE_BYTES = 1 << 20
TASK_FIELDS = frozenset(
    {
        "task_id",
        "prompt",
        "entry_point",
        "module",
        "judge",
        "prompt_style",
        "canonical_solution",
        "metadata",
    }
)


def load_directory(root: Path) -> Iterator[tuple[Path, Task]]:
    """Yield ``(task file, task)`` for each task folder under ``root``, sorted by folder name."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not _skipped(p.name)):
        yield load_task_folder(folder)


def load_task_folder(folder: Path) -> tuple[Path, Task]:
    """One task from its folder; errors name the folder or its task file."""
    task_file = _task_file(folder)
    config = _read_config(task_file)
    task_id = folder.name
    try:
        task_id = optional_str(config, "task_id") or task_id
        reject_unknown(config, TASK_FIELDS, "task file")
        return task_file, _build(folder, config, task_id)
    except RowError as exc:
        raise InputError(f"task '{task_id}': {exc}", path=folder) from None


def _build(folder: Path, config: Mapping[str, Any], task_id: str) -> Task:
    prompt, prompt_file = _text_or_file(folder, config, "prompt", PROMPT_FILES)
    if prompt is None:
        names = "/".join(PROMPT_FILES)
        raise RowError(f"missing prompt: give 'prompt' in the task file or a {names} file")
    solution, solution_file = _text_or_file(folder, config, "canonical_solution", (SOLUTION_FILE,))
    consumed = {p.name for p in (prompt_file, solution_file) if p is not None}
    consumed.update(TASK_FILES)
    module = optional_str(config, "module") or "solution"
    metadata = config.get("metadata")
    return Task(
        task_id=task_id,
        prompt=prompt,
        entry_point=require_str(config, "entry_point"),
        tests=pytest_suite(
            _suite_files(folder, consumed), module, optional_str(config, "judge") or "outside"
        ),
        canonical_solution=solution,
        prompt_style=_style(config, prompt_file),
        metadata={} if metadata is None else dict(as_mapping(metadata, "metadata")),
    )


def _style(config: Mapping[str, Any], prompt_file: Path | None) -> PromptStyle:
    # Prose prompt files (.md, .txt) are "text" unless the task file says otherwise.
    if config.get("prompt_style") is not None:
        return prompt_style(config["prompt_style"])
    return "text" if prompt_file is not None and prompt_file.suffix != ".py" else "code"


def _task_file(folder: Path) -> Path:
    found = [folder / name for name in TASK_FILES if (folder / name).is_file()]
    if not found:
        raise InputError(f"task folder has no {' or '.join(TASK_FILES)}", path=folder)
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputError(f"task folder has several task files ({names}); keep one", path=folder)
    return found[0]


def _read_config(task_file: Path) -> Mapping[str, Any]:
    text = _read_text(task_file)
    try:
        config = json.loads(text) if task_file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"malformed task file: {exc}", path=task_file) from None
    if config is None:
        return {}
    try:
        return as_mapping(config, "task file")
    except RowError as exc:
        raise InputError(str(exc), path=task_file) from None


def _text_or_file(
    folder: Path, config: Mapping[str, Any], field: str, names: tuple[str, ...]
) -> tuple[str | None, Path | None]:
    """A text given either inline as ``field`` or as one of the files ``names``."""
    files = [folder / name for name in names if (folder / name).is_file()]
    inline = optional_str(config, field)
    if len(files) + (inline is not None) > 1:
        given = ([f"'{field}' in the task file"] if inline is not None else []) + [
            f.name for f in files
        ]
        raise RowError(f"{field} is given more than once: {', '.join(given)}")
    if files:
        return _read_text(files[0]), files[0]
    return inline, None


def _suite_files(folder: Path, consumed: set[str]) -> dict[str, str]:
    """Every other regular file under ``folder``, keyed by its relative posix path."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        here = Path(dirpath)
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if _skipped(name) or rel in consumed:
                continue
            if path.is_file():
                files[rel] = _read_text(path)
    return files


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__pycache__"


def _read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"file is too large ({size} bytes; the limit is 1 MiB)", path=path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("file is not UTF-8 text", path=path) from None
