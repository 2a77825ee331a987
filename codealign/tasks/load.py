"""``load_tasks``: one entry point for built-in task sets, files, suite folders and datasets.

Every route yields ``(Origin, Task)`` pairs, so validation (duplicate ids, entry points)
is shared and its errors name the file and line, task index or dataset row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from codealign.errors import InputError
from codealign.jsonl import open_text, read_jsonl
from codealign.tasks.directory import load_directory
from codealign.tasks.hf import HF_PREFIX, dataset_rows, is_saved_dataset
from codealign.tasks.humaneval import from_humaneval, humaneval_data_path
from codealign.tasks.mbpp import from_mbpp
from codealign.tasks.model import Task, defines
from codealign.tasks.native import RowError, from_native, type_name

CONVERTERS: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    "humaneval": from_humaneval,
    "mbpp": from_mbpp,
    "native": from_native,
}
FORMATS = tuple(CONVERTERS)
_FORMAT_HINTS = (
    "humaneval (task_id, prompt, entry_point, test, canonical_solution), "
    "mbpp (task_id, text or prompt, code, test_list), "
    "native (task_id, prompt, entry_point, tests: {kind: ...})"
)
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")
_DOCUMENT_SUFFIXES = (".json", ".yaml", ".yml")
_DATASET_SUFFIXES = (".parquet", ".arrow")


@dataclass(frozen=True)
class Origin:
    """Where a task came from: a file and line, or a file or dataset and an item in it."""

    path: str
    line: int | None = None
    item: str | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.path}:{self.line}"
        return f"{self.path} {self.item}" if self.item else self.path

    def error(self, message: str) -> InputError:
        message = f"{self.item}: {message}" if self.item else message
        return InputError(message, path=self.path, line=self.line)


def _builtin_humaneval() -> list[Task]:
    return load_tasks(humaneval_data_path(), format="humaneval")


def _builtin_tiny(split: Literal["train", "heldout"]) -> list[Task]:
    from codealign.tasks.tiny import tiny_tasks  # lazily: generated on first use

    name = f"tiny-{split}"
    return _validated(((Origin(name, item=t.task_id), t) for t in tiny_tasks(split)), name)


def _builtin_pyfuncs(split: Literal["train", "heldout"]) -> list[Task]:
    from codealign.tasks.functions import pyfuncs_tasks  # lazily: generated on first use

    name = f"pyfuncs-{split}"
    return _validated(((Origin(name, item=t.task_id), t) for t in pyfuncs_tasks(split)), name)


# Name -> loader; other modules register more task sets here.
BUILTIN_TASK_SETS: dict[str, Callable[[], list[Task]]] = {
    "humaneval": _builtin_humaneval,
    "tiny-train": lambda: _builtin_tiny("train"),
    "tiny-heldout": lambda: _builtin_tiny("heldout"),
    "pyfuncs-train": lambda: _builtin_pyfuncs("train"),
    "pyfuncs-heldout": lambda: _builtin_pyfuncs("heldout"),
}


def load_tasks(spec: str | os.PathLike[str], *, format: str | None = None) -> list[Task]:
    """Load tasks from a built-in name, a file, a directory, or ``hf:<name>[:<split>]``.

    ``format`` ("humaneval", "mbpp" or "native") skips detection for row-based sources.
    A ``str`` spec is looked up as a built-in name first; pass a ``Path`` to force a path.
    """
    if format is not None and format not in CONVERTERS:
        raise InputError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if isinstance(spec, str) and spec in BUILTIN_TASK_SETS:
        return BUILTIN_TASK_SETS[spec]()
    if isinstance(spec, str) and spec.startswith(HF_PREFIX):
        return _validated(_dataset_tasks(spec, spec, format), spec)
    path = Path(spec)
    return _validated(_path_tasks(path, format), str(path))


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The format whose distinguishing field the row has, or None."""
    if isinstance(row.get("tests"), Mapping):
        return "native"
    if "test_list" in row:
        return "mbpp"
    if "test" in row:
        return "humaneval"
    if "tests" in row:
        return "native"  # so that a malformed ``tests`` gets the native error
    if "canonical_solution" in row and "entry_point" in row:
        return "humaneval"  # so that a missing ``test`` is named
    return None


def convert_row(row: Mapping[str, Any], format: str | None, origin: Origin) -> Task:
    """A task from one record, in ``format`` or the detected one; errors name ``origin``."""
    fmt = format or detect_format(row)
    if fmt is None:
        fields = ", ".join(sorted(row)) or "none"
        raise origin.error(
            f"unknown task format: the fields ({fields}) match none of the recognized "
            f"formats: {_FORMAT_HINTS}"
        )
    try:
        return CONVERTERS[fmt](row)
    except RowError as exc:
        task_id = row.get("task_id")
        named = isinstance(task_id, str | int) and not isinstance(task_id, bool)
        raise origin.error(f"task {task_id!r}: {exc}" if named else str(exc)) from None


def _path_tasks(path: Path, format: str | None) -> Iterator[tuple[Origin, Task]]:
    if path.is_dir():
        if is_saved_dataset(path):
            yield from _dataset_tasks(path, str(path), format)
        else:
            yield from ((Origin(str(file)), task) for file, task in load_directory(path))
        return
    if not path.exists():
        names = ", ".join(sorted(BUILTIN_TASK_SETS))
        raise InputError(
            f"no such file or directory, and not a built-in task set (built-in: {names})",
            path=path,
        )
    name = path.name.lower()
    if name.endswith(_DATASET_SUFFIXES):
        yield from _dataset_tasks(path, str(path), format)
        return
    if name.endswith(_JSONL_SUFFIXES):
        rows: Iterable[tuple[Origin, Mapping[str, Any]]] = (
            (Origin(str(path), line=lineno), row) for lineno, row in read_jsonl(path)
        )
    elif name.endswith(_DOCUMENT_SUFFIXES):
        rows = _document_rows(path)
    else:
        kinds = ", ".join(_JSONL_SUFFIXES + _DOCUMENT_SUFFIXES + _DATASET_SUFFIXES)
        raise InputError(f"unsupported file type; expected {kinds} or a directory", path=path)
    for origin, row in rows:
        yield origin, convert_row(row, format, origin)


def _dataset_tasks(
    source: str | Path, label: str, format: str | None
) -> Iterator[tuple[Origin, Task]]:
    for index, row in dataset_rows(source):
        origin = Origin(label, item=f"row {index}")
        yield origin, convert_row(row, format, origin)


def _document_rows(path: Path) -> Iterator[tuple[Origin, Mapping[str, Any]]]:
    """Records of a JSON or YAML file holding a list of tasks or ``{"tasks": [...]}``."""
    document = _parse_document(path)
    if isinstance(document, Mapping) and "tasks" in document:
        document = document["tasks"]
    if document is None:
        return
    if not isinstance(document, list):
        raise InputError(
            f"expected a list of tasks or a mapping with 'tasks', got {type_name(document)}",
            path=path,
        )
    for index, record in enumerate(document):
        origin = Origin(str(path), item=f"index {index}")
        if not isinstance(record, Mapping):
            raise origin.error(f"expected a mapping, got {type_name(record)}")
        yield origin, record


def _parse_document(path: Path) -> Any:
    try:
        with open_text(path) as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read file: {exc}", path=path) from None
    if path.name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise InputError(f"malformed YAML: {problem}", path=path, line=line) from None


def _validated(pairs: Iterable[tuple[Origin, Task]], where: str) -> list[Task]:
    """All tasks, each checked; duplicate ids name both places."""
    seen: dict[str, Origin] = {}
    tasks: list[Task] = []
    for origin, task in pairs:
        _check_task(task, origin)
        if task.task_id in seen:
            raise origin.error(
                f"duplicate task id '{task.task_id}', first defined at {seen[task.task_id]}"
            )
        seen[task.task_id] = origin
        tasks.append(task)
    if not tasks:
        raise InputError("no tasks found", path=where)
    return tasks


def _check_task(task: Task, origin: Origin) -> None:
    if not task.task_id.strip():
        raise origin.error("task_id must not be empty")
    if not task.entry_point.isidentifier():
        what = "must not be empty" if not task.entry_point else "must be a Python identifier"
        raise origin.error(f"task '{task.task_id}': entry_point {what}, got {task.entry_point!r}")
    entry = task.entry_point
    if task.prompt_style == "code" and not defines(task.prompt, entry):
        raise origin.error(f"task '{task.task_id}': prompt does not define entry point '{entry}'")
    solution = task.canonical_solution
    if task.prompt_style == "text" and solution is not None and not defines(solution, entry):
        raise origin.error(
            f"task '{task.task_id}': canonical solution does not define entry point '{entry}'"
        )
