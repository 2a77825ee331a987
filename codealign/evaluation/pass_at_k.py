"""The unbiased pass@k estimator of Chen et al. (2021), in its numerically stable form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c correct) passes.

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so that no
    binomial coefficient is ever formed.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


@dataclass
class PassAtK:
    """pass@k over tasks; ``value`` is None when some task has fewer than k samples."""

    k: int
    value: float | None
    tasks: int
    too_few_samples: list[str] = field(default_factory=list)


def pass_at_k_over_tasks(counts: Mapping[str, tuple[int, int]], ks: Iterable[int]) -> list[PassAtK]:
    """Mean pass@k over tasks from per-task ``(n, c)``; never silently drops a task."""
    out = []
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        short = sorted(task for task, (n, _) in counts.items() if n < k)
        if short or not counts:
            out.append(PassAtK(k, None, len(counts), short))
            continue
        values = [pass_at_k(n, c, k) for n, c in counts.values()]
        out.append(PassAtK(k, sum(values) / len(values), len(counts)))
    return out
