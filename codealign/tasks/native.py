"""The native task format, and the field checks every row format shares.

A native record names its test suite by ``tests.kind``::

    {"task_id": "add", "prompt": "def add(a, b):\\n", "entry_point": "add",
     "tests": {"kind": "asserts", "asserts": ["assert add(1, 2) == 3"]}}

Converters raise :class:`RowError` with a bare message; the loader adds the file, line
and task id, which only it knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from codealign.tasks.model import (
    AssertsSuite,
    CheckSuite,
    IOCase,
    IOSuite,
    PromptStyle,
    PytestSuite,
    Task,
    TestSuite,
    defines,
)

SUITE_KINDS = ("check", "asserts", "pytest", "io")
PROMPT_STYLES: tuple[PromptStyle, ...] = ("code", "text")
NATIVE_FIELDS = frozenset(
    {"task_id", "prompt", "entry_point", "tests", "canonical_solution", "prompt_style", "metadata"}
)
_SUITE_FIELDS: dict[str, frozenset[str]] = {
    "check": frozenset({"kind", "code"}),
    "asserts": frozenset({"kind", "asserts", "setup"}),
    "pytest": frozenset({"kind", "files", "module", "judge"}),
    "io": frozenset({"kind", "cases"}),
}
_TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")


class RowError(ValueError):
    """A problem with one record; the loader adds where the record came from."""


def type_name(value: object) -> str:
    """A user-facing type name for error messages."""
    return "null" if value is None else type(value).__name__


def require(row: Mapping[str, Any], name: str, prefix: str = "") -> Any:
    """The value of a required field."""
    if name not in row:
        raise RowError(f"missing required field '{prefix}{name}'")
    return row[name]


def require_str(row: Mapping[str, Any], name: str, prefix: str = "") -> str:
    """The value of a required string field."""
    return as_str(require(row, name, prefix), prefix + name)


def optional_str(row: Mapping[str, Any], name: str, prefix: str = "") -> str | None:
    """The value of an optional string field; absent and null both give None."""
    value = row.get(name)
    return None if value is None else as_str(value, prefix + name)


def as_str(value: object, label: str) -> str:
    if not isinstance(value, str):
        raise RowError(f"{label} must be a string, got {type_name(value)}")
    return value


def as_mapping(value: object, label: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise RowError(f"{label} must be a mapping with string keys, got {type_name(value)}")
    return value


def as_str_list(value: object, label: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of strings, as a tuple; a bare string is refused since it is rarely meant."""
    if not isinstance(value, list | tuple):
        raise RowError(f"{label} must be a list of strings, got {type_name(value)}")
    if not value and not allow_empty:
        raise RowError(f"{label} must not be empty")
    for i, item in enumerate(value):
        as_str(item, f"{label}[{i}]")
    return tuple(value)


def prompt_style(value: object) -> PromptStyle:
    for style in PROMPT_STYLES:
        if value == style:
            return style
    raise RowError(f"prompt_style must be one of {', '.join(PROMPT_STYLES)}, got {value!r}")


def reject_unknown(row: Mapping[str, Any], allowed: frozenset[str], label: str) -> None:
    """Refuse unknown fields, so that a misspelt optional field is not silently ignored."""
    unknown = sorted(set(row) - allowed)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise RowError(
            f"{label} has unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}"
        )


def pytest_suite(files: Mapping[str, str], module: str, judge: str = "outside") -> PytestSuite:
    """A pytest suite from ``{relative path: content}``, with paths checked and normalised."""
    if not module.isidentifier():
        raise RowError(f"pytest module must be a Python identifier, got {module!r}")
    if judge not in ("outside", "inside"):
        raise RowError(f"pytest judge must be 'outside' or 'inside', got {judge!r}")
    normalised: dict[str, str] = {}
    for raw, content in files.items():
        path = _relative_path(raw)
        if path.parts[0] in (module, f"{module}.py"):
            raise RowError(f"pytest file '{raw}' collides with the candidate module '{module}'")
        if str(path) in normalised:
            raise RowError(f"pytest file '{raw}' is given twice")
        normalised[str(path)] = content
    if not any(_TEST_FILE.match(PurePosixPath(p).name) for p in normalised):
        raise RowError("pytest suite has no test file (test_*.py or *_test.py)")
    return PytestSuite(
        files=tuple(sorted(normalised.items())),
        module=module,
        judge="inside" if judge == "inside" else "outside",
    )


def _relative_path(raw: str) -> PurePosixPath:
    # Suite files are written under the sandbox's work folder; nothing may escape it.
    path = PurePosixPath(raw)
    if not raw or "\\" in raw or path.is_absolute() or ".." in path.parts or not path.parts:
        raise RowError(f"pytest file path '{raw}' must be relative and must not contain '..'")
    return path


def parse_tests(value: object) -> TestSuite:
    """A test suite from a native ``tests`` mapping."""
    tests = as_mapping(value, "tests")
    kind = require(tests, "kind", "tests.")
    if kind not in SUITE_KINDS:
        raise RowError(f"tests.kind must be one of {', '.join(SUITE_KINDS)}, got {kind!r}")
    reject_unknown(tests, _SUITE_FIELDS[kind], f"tests of kind '{kind}'")
    if kind == "check":
        return check_suite(require_str(tests, "code", "tests."), "tests.code")
    if kind == "asserts":
        asserts = as_str_list(require(tests, "asserts", "tests."), "tests.asserts")
        return AssertsSuite(asserts=asserts, setup=optional_str(tests, "setup", "tests.") or "")
    if kind == "pytest":
        files = as_mapping(_files_mapping(require(tests, "files", "tests.")), "tests.files")
        for path, content in files.items():
            as_str(content, f"tests.files['{path}']")
        module = optional_str(tests, "module", "tests.") or "solution"
        return pytest_suite(files, module, optional_str(tests, "judge", "tests.") or "outside")
    return _io_suite(require(tests, "cases", "tests."))


def check_suite(code: str, label: str) -> CheckSuite:
    if not defines(code, "check"):
        raise RowError(f"{label} does not define check(candidate)")
    return CheckSuite(code=code)


def _files_mapping(value: object) -> object:
    # Arrow has no natural column type for a path->content map, so datasets may store the
    # files as a list of {path, content} records; accept both shapes.
    if not isinstance(value, list):
        return value
    files: dict[str, object] = {}
    for i, item in enumerate(value):
        record = as_mapping(item, f"tests.files[{i}]")
        files[require_str(record, "path", f"tests.files[{i}].")] = record.get("content")
    return files


def _io_suite(value: object) -> IOSuite:
    if not isinstance(value, list | tuple) or not value:
        raise RowError(f"tests.cases must be a non-empty list, got {type_name(value)}")
    cases = []
    for i, item in enumerate(value):
        prefix = f"tests.cases[{i}]."
        case = as_mapping(item, f"tests.cases[{i}]")
        reject_unknown(case, frozenset({"input", "output"}), f"tests.cases[{i}]")
        cases.append(
            IOCase(require_str(case, "input", prefix), require_str(case, "output", prefix))
        )
    return IOSuite(cases=tuple(cases))


def from_native(row: Mapping[str, Any]) -> Task:
    """A task from a native record."""
    reject_unknown(row, NATIVE_FIELDS, "task")
    metadata = row.get("metadata")
    return Task(
        task_id=require_str(row, "task_id"),
        prompt=require_str(row, "prompt"),
        entry_point=require_str(row, "entry_point"),
        tests=parse_tests(require(row, "tests")),
        canonical_solution=optional_str(row, "canonical_solution"),
        prompt_style=prompt_style(row.get("prompt_style") or "code"),
        metadata={} if metadata is None else dict(as_mapping(metadata, "metadata")),
    )


def to_native(task: Task) -> dict[str, Any]:
    """``task`` as a native record: ``from_native(to_native(task)) == task``."""
    suite = task.tests
    tests: dict[str, Any]
    if isinstance(suite, CheckSuite):
        tests = {"kind": "check", "code": suite.code}
    elif isinstance(suite, AssertsSuite):
        tests = {"kind": "asserts", "asserts": list(suite.asserts), "setup": suite.setup}
    elif isinstance(suite, PytestSuite):
        tests = {"kind": "pytest", "files": dict(suite.files), "module": suite.module,
                 "judge": suite.judge}  # fmt: skip
    else:
        tests = {
            "kind": "io",
            "cases": [{"input": c.input, "output": c.output} for c in suite.cases],
        }
    record: dict[str, Any] = {
        "task_id": task.task_id,
        "prompt": task.prompt,
        "entry_point": task.entry_point,
        "tests": tests,
        "prompt_style": task.prompt_style,
    }
    if task.canonical_solution is not None:
        record["canonical_solution"] = task.canonical_solution
    if task.metadata:
        record["metadata"] = task.metadata
    return record
