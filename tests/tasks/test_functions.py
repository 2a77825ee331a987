"""The built-in pyfuncs task family: splits, task shape, asserts that catch bugs, and no
overlap with HumanEval."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest

from codealign.execution import ExecutionConfig, execute_samples
from codealign.samples import Sample
from codealign.tasks import AssertsSuite, Task, load_tasks
from codealign.tasks.functions import (
    FAMILIES,
    TEMPLATES,
    behaviour_overlap,
    humaneval_overlap,
    name_overlap,
    ngram_overlap,
    pyfuncs_tasks,
)
from codealign.tasks.model import defines


def passes(task: Task, program: str) -> bool:
    """Run the task's asserts on ``program`` here (generated code is trusted)."""
    assert isinstance(task.tests, AssertsSuite)
    namespace: dict[str, Any] = {}
    try:
        exec(program, namespace)
        for line in task.tests.asserts:
            exec(line, namespace)
    except Exception:
        return False
    return True


def key(task: Task) -> tuple[str, str]:
    return task.metadata["template"], json.dumps(task.metadata["constants"])


def plain(value: Any) -> bool:
    """Whether a literal holds only ints, strs, bools and None in lists, tuples and dicts."""
    if isinstance(value, list | tuple):
        return all(plain(v) for v in value)
    if isinstance(value, dict):
        return all(plain(k) and plain(v) for k, v in value.items())
    return value is None or isinstance(value, int | str)


@pytest.fixture(scope="module")
def train() -> list[Task]:
    return pyfuncs_tasks("train")


@pytest.fixture(scope="module")
def heldout() -> list[Task]:
    return pyfuncs_tasks("heldout")


def test_templates_and_families() -> None:
    assert len(TEMPLATES) >= 40 and len(set(TEMPLATES)) == len(TEMPLATES)
    assert len(FAMILIES) >= 8


def test_split_sizes_ids_and_coverage(train: list[Task], heldout: list[Task]) -> None:
    assert len(train) >= 600
    assert 100 <= len(heldout) <= 140
    assert [t.task_id for t in train] == [f"pyfuncs/train/{i}" for i in range(len(train))]
    assert [t.task_id for t in heldout] == [f"pyfuncs/heldout/{i}" for i in range(len(heldout))]
    for split in (train, heldout):
        assert {t.metadata["template"] for t in split} == set(TEMPLATES)
        assert {t.metadata["family"] for t in split} == set(FAMILIES)


def test_splits_share_no_instance(train: list[Task], heldout: list[Task]) -> None:
    train_keys = {key(t) for t in train}
    heldout_keys = {key(t) for t in heldout}
    assert len(train_keys) == len(train) and len(heldout_keys) == len(heldout)
    assert not train_keys & heldout_keys
    instances = [t.metadata["instance"] for t in train + heldout]
    assert len(set(instances)) == len(instances)


def test_instances_vary_names(train: list[Task]) -> None:
    names: dict[str, set[str]] = defaultdict(set)
    signatures: dict[str, set[str]] = defaultdict(set)
    for task in train:
        names[task.metadata["template"]].add(task.entry_point)
        signatures[task.metadata["template"]].add(task.prompt.split("\n")[0])
    for template in TEMPLATES:
        assert len(names[template]) >= 2, template
        assert len(signatures[template]) >= 3, template


def _function(task: Task) -> ast.FunctionDef:
    tree = ast.parse(task.prompt + "    pass\n")
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef)
    return tree.body[0]


def _check_assert(task: Task, line: str) -> None:
    """``assert entry_point(literals) == literal``, with plain literals only."""
    (node,) = ast.parse(line).body
    assert isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
    call, (op,), (expected,) = node.test.left, node.test.ops, node.test.comparators
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name), line
    assert call.func.id == task.entry_point and not call.keywords and isinstance(op, ast.Eq)
    assert all(plain(ast.literal_eval(a)) for a in [*call.args, expected]), line


def _check_examples(task: Task, docstring: str) -> None:
    """One or two ``>>>`` examples, each with the output the canonical solution gives."""
    lines = docstring.splitlines()
    calls = [i for i, line in enumerate(lines) if line.strip().startswith(">>> ")]
    assert 1 <= len(calls) <= 2, task.task_id
    namespace: dict[str, Any] = {}
    exec(task.canonical_solution or "", namespace)
    for i in calls:
        call = lines[i].strip().removeprefix(">>> ")
        assert call.startswith(f"{task.entry_point}(")
        assert eval(call, namespace) == ast.literal_eval(lines[i + 1].strip()), task.task_id


def test_task_shape(train: list[Task], heldout: list[Task]) -> None:
    for task in train + heldout:
        assert task.prompt_style == "code"
        assert task.prompt.startswith(f"def {task.entry_point}(")
        assert task.prompt.endswith('    """\n')
        fn = _function(task)
        assert fn.returns is not None and all(a.annotation is not None for a in fn.args.args)
        docstring = ast.get_docstring(fn) or ""
        _check_examples(task, docstring)
        solution = task.canonical_solution
        assert solution is not None and solution.startswith(task.prompt)
        assert defines(solution, task.entry_point)
        assert 1 <= solution[len(task.prompt) :].count("\n") <= 8
        assert isinstance(task.tests, AssertsSuite) and 4 <= len(task.tests.asserts) <= 6
        for line in task.tests.asserts:
            _check_assert(task, line)


def test_canonical_passes_and_bugs_fail(train: list[Task], heldout: list[Task]) -> None:
    for task in train + heldout:
        assert task.canonical_solution is not None
        assert passes(task, task.canonical_solution), task.task_id
        assert task.metadata["bugs"], task.task_id
        for bug in task.metadata["bugs"]:
            assert not passes(task, task.prompt + bug), (task.task_id, bug)
        # A function returning one fixed value never passes.
        assert isinstance(task.tests, AssertsSuite)
        assert len({a.rsplit(" == ", 1)[1] for a in task.tests.asserts}) >= 2, task.task_id


def test_deterministic_across_calls_and_hash_seeds(heldout: list[Task]) -> None:
    again = pyfuncs_tasks("heldout")
    assert again == heldout and [t.metadata for t in again] == [t.metadata for t in heldout]
    again[0].metadata["bugs"].clear()  # copies: the cached split is not touched
    assert pyfuncs_tasks("heldout")[0].metadata == heldout[0].metadata
    script = (
        "import hashlib, time\n"
        "start = time.perf_counter()\n"
        "from codealign.tasks.functions import pyfuncs_tasks\n"
        "tasks = pyfuncs_tasks('train') + pyfuncs_tasks('heldout')\n"
        "seconds = time.perf_counter() - start\n"
        "text = repr([(t.task_id, t.prompt, t.tests, t.canonical_solution) for t in tasks])\n"
        "print(hashlib.sha256(text.encode()).hexdigest(), seconds)\n"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.split()
        for seed in ("1", "2")
    ]
    assert runs[0][0] == runs[1][0]
    assert max(float(seconds) for _, seconds in runs) < 5


def test_load_tasks_validates_builtin_names(train: list[Task], heldout: list[Task]) -> None:
    assert [t.task_id for t in load_tasks("pyfuncs-heldout")] == [t.task_id for t in heldout]
    assert len(load_tasks("pyfuncs-train")) == len(train)


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown pyfuncs split"):
        pyfuncs_tasks("test")  # type: ignore[arg-type]


def test_no_overlap_with_humaneval(train: list[Task], heldout: list[Task]) -> None:
    assert humaneval_overlap(train + heldout) == []


def test_overlap_checks_catch_a_copy_of_humaneval() -> None:
    """The checks are not vacuous: HumanEval's strlen under another name is caught."""
    strlen = next(t for t in load_tasks("humaneval") if t.entry_point == "strlen")
    copied = Task(
        task_id="copy/0",
        prompt=strlen.prompt.replace("strlen", "text_length"),
        entry_point="text_length",
        tests=AssertsSuite(("assert text_length('') == 0", "assert text_length('abc') == 3")),
        canonical_solution=strlen.prompt.replace("strlen", "text_length") + "    return 0\n",
    )
    assert name_overlap([copied]) == []
    assert name_overlap([dataclasses.replace(copied, entry_point="strLen")])
    assert ngram_overlap([copied])
    reasons = behaviour_overlap([copied])
    assert "copy/0: HumanEval/23 (strlen) passes all its asserts" in reasons


@pytest.mark.sandbox
def test_heldout_canonical_solutions_pass_in_sandbox(
    bwrap_config: ExecutionConfig, heldout: list[Task]
) -> None:
    tasks = {t.task_id: t for t in heldout}
    samples = [
        Sample(t.task_id, i, 0, solution=t.canonical_program()) for i, t in enumerate(heldout)
    ]
    results = execute_samples(tasks, samples, bwrap_config, progress=False)
    assert [r.status for r in results] == ["passed"] * len(heldout), [
        r.message for r in results if not r.passed
    ]
