"""pass@k reports from execution results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from codealign.evaluation.pass_at_k import pass_at_k_over_tasks
from codealign.execution.results import ExecResult
from codealign.tasks import Task


def evaluation_report(
    tasks: Mapping[str, Task], results: Sequence[ExecResult], ks: Sequence[int]
) -> dict[str, Any]:
    """``{"pass@k": value or None, ..., "per_task": {...}, ...}`` over tasks with samples."""
    per_task: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = per_task.setdefault(r.task_id, {"n": 0, "c": 0, "mean_pass_rate": 0.0})
        entry["n"] += 1
        entry["c"] += int(r.passed)
        entry["mean_pass_rate"] += r.pass_rate
    for entry in per_task.values():
        entry["mean_pass_rate"] = round(entry["mean_pass_rate"] / entry["n"], 6)
    counts = {task: (e["n"], e["c"]) for task, e in per_task.items()}
    report: dict[str, Any] = {}
    not_computable: dict[str, str] = {}
    for p in pass_at_k_over_tasks(counts, ks):
        report[f"pass@{p.k}"] = p.value
        if p.value is None:
            few = ", ".join(p.too_few_samples[:5]) + (", ..." if len(p.too_few_samples) > 5 else "")
            not_computable[f"pass@{p.k}"] = (
                f"{len(p.too_few_samples)} of {p.tasks} tasks have fewer than {p.k} samples: {few}"
            )
    report["not_computable"] = not_computable
    report["tasks"] = len(per_task)
    report["samples"] = len(results)
    report["tasks_without_samples"] = sorted(set(tasks) - set(per_task))
    report["status_counts"] = dict(sorted(Counter(r.status for r in results).items()))
    report["mean_pass_rate"] = sum(r.pass_rate for r in results) / len(results) if results else None
    report["per_task"] = per_task
    return report


def format_report(report: Mapping[str, Any], ks: Sequence[int]) -> str:
    lines = [f"{report['samples']} samples over {report['tasks']} tasks"]
    for k in ks:
        value = report[f"pass@{k}"]
        if value is None:
            lines.append(f"pass@{k}: not computable ({report['not_computable'][f'pass@{k}']})")
        else:
            lines.append(f"pass@{k}: {value:.4f}")
    statuses = ", ".join(f"{s} {n}" for s, n in report["status_counts"].items())
    lines.append(f"statuses: {statuses}")
    missing = report["tasks_without_samples"]
    if missing:
        lines.append(
            f"warning: {len(missing)} tasks have no samples and are not counted "
            f"(e.g. {', '.join(missing[:3])})"
        )
    return "\n".join(lines)
