"""pass@k reports from execution results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from codealign.evaluation.pass_at_k import pass_at_k_over_tasks
from codealign.execution.records.results import ExecResult
from codealign.tasks import Task


def answer_counts(
    records: Sequence[Mapping[str, Any]], results: Sequence[ExecResult]
) -> dict[str, Any]:
    """What the answers looked like (samples from a model), as counts and shares: cut at
    the token limit, syntax errors, the entry point under another name, no code at all."""
    shapes = [r.get("answer") or {} for r in records]
    counts = {
        "cut_at_limit": sum(r.get("finish_reason") == "length" for r in records),
        "syntax_error": sum(r.status == "syntax_error" for r in results),
        "wrong_name": sum(a.get("entry_point") == "other_name" for a in shapes),
        "no_code": sum(a.get("code_from") == "none" for a in shapes),
        "cut_to_parse": sum(bool(a.get("cut_to_parse")) for a in shapes),
    }
    total = len(records)
    return {
        "samples": total,
        **counts,
        "rates": {k: round(v / total, 6) if total else None for k, v in counts.items()},
    }


def evaluation_report(
    tasks: Mapping[str, Task],
    results: Sequence[ExecResult],
    ks: Sequence[int],
    records: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``{"pass@k": value or None, ..., "per_task": {...}, ...}`` over tasks with samples;
    with the sample ``records`` a model wrote, also what its answers looked like."""
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
    if records is not None and any("finish_reason" in r for r in records):
        report["answers"] = answer_counts(records, results)
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
    if "answers" in report:
        a = report["answers"]
        lines.append(
            f"answers: {a['cut_at_limit']} cut at the token limit, {a['syntax_error']} syntax "
            f"errors, {a['wrong_name']} with the function under another name, "
            f"{a['no_code']} without code"
        )
    missing = report["tasks_without_samples"]
    if missing:
        lines.append(
            f"warning: {len(missing)} tasks have no samples and are not counted "
            f"(e.g. {', '.join(missing[:3])})"
        )
    return "\n".join(lines)
