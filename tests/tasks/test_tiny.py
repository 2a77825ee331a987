"""The built-in tiny task family: splits, asserts that catch bugs, and the SFT mix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from codealign.execution import ExecutionConfig, execute_samples
from codealign.samples import Sample
from codealign.tasks import AssertsSuite, Task, load_tasks
from codealign.tasks.tiny import FAMILIES, RECIPE_VERSION, TEMPLATES, sft_examples, tiny_tasks


def passes(task: Task, completion: str) -> bool:
    """Run the task's asserts on prompt + completion here (generated code is trusted)."""
    assert isinstance(task.tests, AssertsSuite)
    namespace: dict[str, Any] = {}
    try:
        exec(task.prompt + completion, namespace)
        for line in task.tests.asserts:
            exec(line, namespace)
    except Exception:
        return False
    return True


def key(task: Task) -> tuple[str, tuple[Any, ...]]:
    return task.metadata["template"], tuple(task.metadata["constants"])


@pytest.fixture(scope="module")
def train() -> list[Task]:
    return tiny_tasks("train")


@pytest.fixture(scope="module")
def heldout() -> list[Task]:
    return tiny_tasks("heldout")


def test_constants() -> None:
    assert RECIPE_VERSION == 1
    assert 8 <= len(TEMPLATES) <= 12
    assert set(FAMILIES) == {"arithmetic", "strings", "lists", "dicts", "conditionals"}


def test_deterministic_across_calls_and_hash_seeds(train: list[Task]) -> None:
    assert tiny_tasks("train") == train
    assert [t.metadata for t in tiny_tasks("train")] == [t.metadata for t in train]
    script = (
        "from codealign.tasks.tiny import tiny_tasks, sft_examples\n"
        "print(repr([(t.prompt, t.tests) for t in tiny_tasks('heldout')]))\n"
        "print(repr(sft_examples(50, seed=3)))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_split_sizes_ids_and_coverage(train: list[Task], heldout: list[Task]) -> None:
    assert 380 <= len(train) <= 420
    assert 90 <= len(heldout) <= 110
    ids = [t.task_id for t in train + heldout]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("tiny/") for i in ids)
    for split in (train, heldout):
        assert {t.metadata["template"] for t in split} == set(TEMPLATES)
        assert {t.metadata["family"] for t in split} == set(FAMILIES)


def test_splits_share_no_instance(train: list[Task], heldout: list[Task]) -> None:
    train_keys = {key(t) for t in train}
    heldout_keys = {key(t) for t in heldout}
    assert len(train_keys) == len(train) and len(heldout_keys) == len(heldout)
    assert not train_keys & heldout_keys


def test_task_shape(heldout: list[Task]) -> None:
    for task in heldout:
        assert task.prompt_style == "code"
        assert task.prompt.startswith(f"def {task.entry_point}(")
        assert task.prompt.endswith('"""\n')
        assert isinstance(task.tests, AssertsSuite)
        assert 3 <= len(task.tests.asserts) <= 5
        assert all(a.startswith(f"assert {task.entry_point}(") for a in task.tests.asserts)
        assert task.canonical_solution is not None
        assert task.canonical_solution.startswith("    return ")


def test_canonical_passes_and_every_bug_fails(train: list[Task], heldout: list[Task]) -> None:
    for task in train + heldout:
        assert task.canonical_solution is not None
        assert passes(task, task.canonical_solution), task
        assert task.metadata["bugs"], task.task_id
        for bug in task.metadata["bugs"]:
            assert not passes(task, bug), (task.task_id, bug)
        # A function returning one fixed value never passes.
        assert isinstance(task.tests, AssertsSuite)
        outputs = {a.rsplit(" == ", 1)[1] for a in task.tests.asserts}
        assert len(outputs) >= 2, task.task_id


def test_load_tasks_validates_builtin_names(heldout: list[Task]) -> None:
    loaded = load_tasks("tiny-heldout")
    assert [t.task_id for t in loaded] == [t.task_id for t in heldout]
    assert len(load_tasks("tiny-train")) == len(tiny_tasks("train"))


def test_unknown_split() -> None:
    with pytest.raises(ValueError, match="unknown tiny split"):
        tiny_tasks("test")  # type: ignore[arg-type]


def test_sft_mix_and_truthful_kinds(train: list[Task], heldout: list[Task]) -> None:
    examples = sft_examples(1000, seed=1)
    assert examples == sft_examples(1000, seed=1)
    assert examples != sft_examples(1000, seed=2)
    kinds = Counter(e.kind for e in examples)
    assert 0.40 <= (kinds["correct"] + kinds["sloppy"]) / len(examples) <= 0.50
    assert kinds["sloppy"] > 0 and kinds["buggy"] > 0
    assert {e.template for e in examples} == set(TEMPLATES)
    assert any(e.task_id is None for e in examples)  # fresh instances
    by_id = {t.task_id: t for t in train}
    heldout_keys = {key(t) for t in heldout}
    heldout_prompts = {t.prompt for t in heldout}
    for e in examples:
        assert (e.template, e.constants) not in heldout_keys
        assert e.prompt not in heldout_prompts
        assert e.completion.endswith("\n") and 1 <= e.completion.count("\n") <= 3
        compile(e.prompt + e.completion, "<sft>", "exec")
        if e.task_id is not None:
            task = by_id[e.task_id]
            assert task.prompt == e.prompt
            assert passes(task, e.completion) == (e.kind != "buggy"), e
    # Sloppy completions differ from the canonical body yet behave the same.
    sloppy = [(e, by_id[e.task_id]) for e in examples if e.kind == "sloppy" and e.task_id]
    assert sloppy
    assert all(e.completion != task.canonical_solution for e, task in sloppy)


@pytest.mark.sandbox
def test_heldout_canonical_solutions_pass_in_sandbox(
    bwrap_config: ExecutionConfig, heldout: list[Task]
) -> None:
    tasks = {t.task_id: t for t in heldout}
    samples = [
        Sample(t.task_id, i, 0, completion=t.canonical_solution) for i, t in enumerate(heldout)
    ]
    results = execute_samples(tasks, samples, bwrap_config, progress=False)
    assert [r.status for r in results] == ["passed"] * len(heldout), [
        r.message for r in results if not r.passed
    ]
