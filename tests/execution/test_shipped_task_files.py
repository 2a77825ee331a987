"""Every format and test kind, from real files, through loading and the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from codealign.execution import ExecutionConfig, execute_samples
from codealign.samples import Sample, canonical_samples
from codealign.tasks import load_tasks

DATA = Path(__file__).parent.parent / "data"
pytestmark = pytest.mark.sandbox


@pytest.mark.parametrize(
    ("spec", "n_tasks"),
    [("suites", 2), ("native.yaml", 4), ("mbpp_sanitized.jsonl", 3), ("mbpp_original.jsonl", 1)],
)
def test_canonical_solutions_pass_and_empty_ones_fail(
    bwrap_config: ExecutionConfig, spec: str, n_tasks: int
) -> None:
    tasks = {t.task_id: t for t in load_tasks(DATA / spec)}
    assert len(tasks) == n_tasks
    samples = canonical_samples(tasks)
    # An answer that defines the entry point but returns nothing useful.
    samples += [
        Sample(
            t.task_id,
            len(samples) + i,
            1,
            solution=f"def {t.entry_point}(*args, **kwargs):\n    return None\n",
        )
        for i, t in enumerate(tasks.values())
    ]
    results = execute_samples(tasks, samples, bwrap_config, progress=False)
    good, bad = results[:n_tasks], results[n_tasks:]
    assert [r.status for r in good] == ["passed"] * n_tasks, [r.message for r in good]
    assert all(r.pass_rate == 1.0 for r in good)
    assert all(not r.passed and r.pass_rate < 1.0 for r in bad), [r.status for r in bad]
