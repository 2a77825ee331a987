"""Is a change in pass@k real? A paired bootstrap over tasks.

Two evaluations of the same tasks (before and after training) are paired by task: each
task contributes its own change in pass@k, and resampling tasks with replacement gives
the spread of the mean change. Pairing removes the (large) variation between easy and hard
tasks that an unpaired comparison would count as noise. Pure functions (numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from codealign.evaluation.pass_at_k import pass_at_k

#: Per task: (samples, correct samples).
Counts = Mapping[str, tuple[int, int]]


@dataclass(frozen=True)
class PairedChange:
    """The mean change of pass@k over the tasks both sides share, with its interval."""

    k: int
    before: float
    after: float
    change: float
    low: float  # the interval's bounds, percentile bootstrap
    high: float
    confidence: float
    tasks: int
    resamples: int

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def per_task_pass_at_k(counts: Counts, k: int) -> dict[str, float]:
    """Each task's unbiased pass@k (tasks with fewer than ``k`` samples are left out)."""
    return {task: pass_at_k(n, c, k) for task, (n, c) in counts.items() if n >= k}


def paired_bootstrap(
    before: Counts,
    after: Counts,
    k: int = 1,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedChange:
    """The change in pass@k from ``before`` to ``after``, paired by task, with a
    percentile bootstrap interval over tasks (seeded: the same inputs, the same interval)."""
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples at least 1")
    a, b = per_task_pass_at_k(before, k), per_task_pass_at_k(after, k)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError(f"no task has at least {k} samples on both sides")
    x = np.array([a[t] for t in shared])
    y = np.array([b[t] for t in shared])
    diff = y - x
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(shared), size=(resamples, len(shared)))
    means = diff[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedChange(
        k=k,
        before=float(x.mean()),
        after=float(y.mean()),
        change=float(diff.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        tasks=len(shared),
        resamples=resamples,
    )
