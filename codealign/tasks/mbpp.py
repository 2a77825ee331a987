"""MBPP records, in both the original and the sanitized field layouts.

Original: task_id, text, code, test_list, test_setup_code, challenge_test_list.
Sanitized: task_id, prompt, code, test_list, test_imports, source_file.
"""

from __future__ import annotations

import ast
import functools
import importlib.resources
from collections.abc import Mapping
from typing import Any

from codealign.tasks.model import AssertsSuite, Task, defines
from codealign.tasks.native import (
    RowError,
    as_str,
    as_str_list,
    optional_str,
    require,
    require_str,
    type_name,
)

# Fields that become the task itself; every other field is kept as metadata.
_CONSUMED = frozenset({"task_id", "text", "prompt", "code", "test_list"})
_SETUP_FIELDS = frozenset({"test_setup_code", "test_imports"})


@functools.cache
def prompt_template() -> str:
    """The MBPP prompt template, with ``{description}`` and ``{tests}`` placeholders."""
    return importlib.resources.files("codealign.prompts").joinpath("mbpp.txt").read_text()


def mbpp_task_id(value: object) -> str:
    """``Mbpp/11`` for the integer ids of the MBPP files; string ids are kept as they are."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowError(f"task_id must be an integer or a string, got {type_name(value)}")
    return f"Mbpp/{value}" if isinstance(value, int) else value


def find_entry_point(asserts: tuple[str, ...], code: str) -> str:
    """The first function called in the asserts (in source order) that ``code`` defines.

    Source order, not "first call": sanitized MBPP wraps calls, as in
    ``assert set(similar_elements(...)) == ...``, so ``set`` must be skipped.
    """
    for i, test in enumerate(asserts):
        try:
            tree = ast.parse(test)
        except SyntaxError as exc:
            raise RowError(f"test_list[{i}] is not valid Python: {exc.msg}") from None
        calls = sorted(
            (node.lineno, node.col_offset, node.func.id)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        )
        for _, _, name in calls:
            if defines(code, name):
                return name
    raise RowError(
        "cannot find the entry point: no function called in test_list is defined in code"
    )


def _setup(row: Mapping[str, Any]) -> str:
    parts = [optional_str(row, "test_setup_code") or ""]
    imports = row.get("test_imports")
    if imports is not None:
        parts.extend(as_str_list(imports, "test_imports", allow_empty=True))
    return "\n".join(part for part in parts if part)


def _description(row: Mapping[str, Any]) -> str:
    if "text" in row:
        return as_str(row["text"], "text")
    if "prompt" in row:
        return as_str(row["prompt"], "prompt")
    raise RowError("missing required field 'text' (or 'prompt' in sanitized MBPP)")


def from_mbpp(row: Mapping[str, Any]) -> Task:
    """A task from an MBPP record; the prompt is rendered from ``prompts/mbpp.txt``."""
    task_id = mbpp_task_id(require(row, "task_id"))
    description = _description(row)
    code = require_str(row, "code")
    asserts = as_str_list(require(row, "test_list"), "test_list")
    metadata = {k: v for k, v in row.items() if k not in _CONSUMED | _SETUP_FIELDS}
    metadata["description"] = description
    return Task(
        task_id=task_id,
        prompt=prompt_template().format(description=description, tests="\n".join(asserts)),
        entry_point=find_entry_point(asserts, code),
        tests=AssertsSuite(asserts=asserts, setup=_setup(row)),
        canonical_solution=code,
        prompt_style="text",
        metadata=metadata,
    )
