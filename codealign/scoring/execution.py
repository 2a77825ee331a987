"""The execution signal: the share of test cases passed."""

from __future__ import annotations

from collections.abc import Sequence

from codealign.errors import InputError
from codealign.scoring.base import Item, SignalValue


def execution_signal(items: Sequence[Item]) -> list[SignalValue]:
    """pass_rate from the per-test verdicts; timeouts, errors and sandbox errors pass nothing."""
    out = []
    for item in items:
        if item.result is None:
            raise InputError(
                f"sample {item.sample.index} of task {item.task.task_id!r} has no "
                "execution result: run 'codealign execute' first"
            )
        r = item.result
        value = 0.0 if r.status in ("timeout", "sandbox_error", "syntax_error") else r.pass_rate
        out.append(
            SignalValue(
                value,
                {
                    "status": r.status,
                    "tests": len(r.tests),
                    "passed": sum(t.passed for t in r.tests),
                },
            )
        )
    return out
