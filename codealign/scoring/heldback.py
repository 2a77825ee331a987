"""Held-back tests: the overoptimisation monitor.

Where a task has enough tests, a fixed part of them never reaches the reward: samples are
run against every test, but the scorer only sees the verdicts of the reward tests. The
pass rate on the held-back tests then tells whether the policy learns the task or the
reward tests; reward hacking shows up as a widening gap between the two.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from codealign.execution.results import ExecResult
from codealign.tasks import Task
from codealign.tasks.model import AssertsSuite


def _rank(task_id: str, name: str) -> str:
    return hashlib.sha256(f"{task_id}\0{name}".encode()).hexdigest()


def heldback_tests(
    tasks: Mapping[str, Task],
    results: Sequence[ExecResult],
    fraction: float,
    min_tests: int,
) -> dict[str, frozenset[str]]:
    """The names of each task's held-back tests (tasks with too few tests hold none back).

    A task's tests are the ones it declares (asserts) together with every test name its
    results report (check functions and pytest suites are only known by running them);
    a hash of each name picks the same tests for every sample and every round.
    """
    if fraction <= 0:
        return {}
    return held_back_of(test_names(tasks, results), fraction, min_tests)


def test_names(tasks: Mapping[str, Task], results: Sequence[ExecResult]) -> dict[str, set[str]]:
    """Each task's test names: those it declares (asserts) and those its results report."""
    names: dict[str, set[str]] = defaultdict(set)
    for task_id, task in tasks.items():
        if isinstance(task.tests, AssertsSuite):
            names[task_id].update(f"test_list[{i}]" for i in range(len(task.tests.asserts)))
    for r in results:
        names[r.task_id].update(t.name for t in r.tests)
    return names


def held_back_of(
    names: Mapping[str, set[str]], fraction: float, min_tests: int
) -> dict[str, frozenset[str]]:
    """The held-back share of each task's ``names``, picked by a hash of each name."""
    out = {}
    for task_id, found in names.items():
        if fraction > 0 and len(found) >= max(min_tests, 2):
            k = min(len(found) - 1, max(1, int(fraction * len(found))))
            out[task_id] = frozenset(sorted(found, key=lambda n: _rank(task_id, n))[:k])
    return out


def _restricted(result: ExecResult, keep: bool, heldback: frozenset[str]) -> ExecResult:
    """``result`` with only the reward tests (keep=True) or only the held-back ones."""
    tests = [t for t in result.tests if (t.name in heldback) != keep]
    status = result.status
    if status in ("passed", "failed"):
        status = "passed" if tests and all(t.passed for t in tests) else "failed"
    return dataclasses.replace(result, tests=tests, status=status)


def reward_view(result: ExecResult, heldback: Mapping[str, frozenset[str]]) -> ExecResult:
    """What the reward may see of ``result``: its held-back verdicts removed."""
    names = heldback.get(result.task_id)
    return result if not names else _restricted(result, True, names)


def monitor(
    results: Sequence[ExecResult], heldback: Mapping[str, frozenset[str]]
) -> dict[str, Any]:
    """Reward tests against held-back tests over the samples of monitored tasks."""
    reward_rates, held_rates, reward_passes, both = [], [], 0, 0
    for r in results:
        names = heldback.get(r.task_id)
        if not names:
            continue
        seen, unseen = _restricted(r, True, names), _restricted(r, False, names)
        reward_rates.append(seen.pass_rate)
        held_rates.append(unseen.pass_rate)
        if seen.passed:
            reward_passes += 1
            both += unseen.passed
    if not reward_rates:
        return {"tasks_monitored": 0, "samples_monitored": 0}
    reward = sum(reward_rates) / len(reward_rates)
    held = sum(held_rates) / len(held_rates)
    return {
        "tasks_monitored": len({r.task_id for r in results if heldback.get(r.task_id)}),
        "samples_monitored": len(reward_rates),
        "reward_tests_pass_rate": round(reward, 6),
        "heldback_tests_pass_rate": round(held, 6),
        "gap": round(reward - held, 6),
        # Of the samples that pass every reward test, the share that also pass every
        # held-back test: it drops when the policy fits the visible tests only.
        "heldback_pass_given_reward_pass": round(both / reward_passes, 6)
        if reward_passes
        else None,
    }
