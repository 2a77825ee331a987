"""Readability preference pairs: a task's correct, readable program (chosen) and the same
program after a few degradations (rejected).

Every pair is checked in the sandbox: both sides must pass the task's tests, or the pair
is dropped and counted. ``builtin_pairs`` makes the pairs the default readability model
trains on; ``pair_records`` turns pairs into JSONL records.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codealign.execution import ExecutionConfig, execute_samples
from codealign.readability.degrade.registry import degrade
from codealign.readability.degrade.source import compiles
from codealign.samples import Sample
from codealign.tasks import Task

# Bump whenever generation changes: the default readability model's cache key hashes it.
DATA_VERSION = 1


@dataclass(frozen=True)
class ReadabilityPair:
    prompt: str  # the task prompt (what the reward model is conditioned on)
    chosen: str  # the readable program (whole program text)
    rejected: str  # the degraded program
    source: str  # "tiny" | "humaneval" | ...
    family: str  # template or task id, for holding out families
    degradations: tuple[str, ...]
    task_id: str


def source_label(task: Task) -> str:
    """Where a task comes from: ``tiny``, ``humaneval``, or its id's prefix."""
    if task.task_id.startswith("tiny/"):
        return "tiny"
    if task.task_id.startswith("HumanEval/"):
        return "humaneval"
    label = task.metadata.get("source")
    return str(label) if label else task.task_id.split("/")[0].lower()


def family_label(task: Task) -> str:
    """The unit to hold out together: a tiny task's template, otherwise the task itself."""
    template = task.metadata.get("template")
    if source_label(task) == "tiny" and template:
        return str(template)
    return task.task_id


_COUNT_KEYS = (
    "tasks",
    "generated",
    "kept",
    "dropped_not_equivalent",
    "dropped_identical",
    "dropped_syntax",
    "dropped_duplicate",
    "dropped_chosen_failed",
    "not_degradable",
    "no_solution",
)


@dataclass(frozen=True)
class _Candidate:
    task: Task
    chosen: str
    rejected: str
    degradations: tuple[str, ...]


def _candidates(
    plan: Sequence[tuple[Task, int]], seed: int, counts: Counter[str]
) -> list[_Candidate]:
    """Degraded versions of each task's canonical program, filtered by text alone."""
    out: list[_Candidate] = []
    for task, n in plan:
        chosen = task.canonical_program()
        counts["tasks"] += 1
        if chosen is None:
            counts["no_solution"] += 1
            continue
        seen: set[str] = set()
        for j in range(n):
            rng = random.Random(f"readability:{DATA_VERSION}:{seed}:{task.task_id}:{j}")
            degraded = degrade(chosen, rng)
            if degraded is None:
                counts["not_degradable"] += 1
                continue
            rejected, names = degraded
            counts["generated"] += 1
            if rejected == chosen:
                counts["dropped_identical"] += 1
            elif not compiles(rejected):
                counts["dropped_syntax"] += 1
            elif rejected in seen:
                counts["dropped_duplicate"] += 1
            else:
                seen.add(rejected)
                out.append(_Candidate(task, chosen, rejected, names))
    return out


def _firsts(candidates: Sequence[_Candidate]) -> list[tuple[str, _Candidate]]:
    """One candidate per task, in order of first appearance."""
    firsts: dict[str, _Candidate] = {}
    for c in candidates:
        firsts.setdefault(c.task.task_id, c)
    return list(firsts.items())


def _generate(
    plan: Sequence[tuple[Task, int]], seed: int, config: ExecutionConfig | None, progress: bool
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    ids = [task.task_id for task, _ in plan]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique")
    counts: Counter[str] = Counter(dict.fromkeys(_COUNT_KEYS, 0))
    candidates = _candidates(plan, seed, counts)
    tasks = {c.task.task_id: c.task for c in candidates}
    # One batch: each task's chosen program once, then every rejected one.
    chosen = [
        Sample(tid, i, 0, solution=c.chosen) for i, (tid, c) in enumerate(_firsts(candidates))
    ]
    rejected = [
        Sample(c.task.task_id, len(chosen) + i, 0, solution=c.rejected)
        for i, c in enumerate(candidates)
    ]
    samples = chosen + rejected
    results = (
        execute_samples(tasks, samples, config or ExecutionConfig(), progress=progress)
        if samples
        else []
    )
    chosen_ok = {s.task_id: r.passed for s, r in zip(chosen, results, strict=False)}
    pairs: list[ReadabilityPair] = []
    for c, result in zip(candidates, results[len(chosen) :], strict=True):
        if not chosen_ok[c.task.task_id]:
            counts["dropped_chosen_failed"] += 1
        elif not result.passed:
            counts["dropped_not_equivalent"] += 1
        else:
            pairs.append(
                ReadabilityPair(
                    prompt=c.task.prompt,
                    chosen=c.chosen,
                    rejected=c.rejected,
                    source=source_label(c.task),
                    family=family_label(c.task),
                    degradations=c.degradations,
                    task_id=c.task.task_id,
                )
            )
    counts["kept"] = len(pairs)
    return pairs, dict(counts)


def generate_pairs(
    tasks: Sequence[Task],
    *,
    per_task: int = 2,
    seed: int = 0,
    config: ExecutionConfig | None = None,
    progress: bool = False,
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    """Up to ``per_task`` pairs per task with a canonical solution, each checked in the
    sandbox: both sides must pass the task's tests.

    Counts: ``generated`` degraded programs = ``kept`` + the ``dropped_*`` ones
    (``not_equivalent``: the rejected side failed; ``identical``; ``syntax``: it does not
    compile; ``duplicate`` of another pair of the same task; ``chosen_failed``).
    Deterministic for a seed (up to sandbox flakiness such as timeouts).
    """
    return _generate([(task, per_task) for task in tasks], seed, config, progress)


_BUILTIN_PER_TASK = {"tiny": 2, "humaneval": 4}


def builtin_pairs(
    seed: int = 0, config: ExecutionConfig | None = None, *, progress: bool = False
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    """Pairs from the tiny family (train and held-out splits, 2 per task) and HumanEval's
    canonical solutions (4 per task): about 1,600 pairs, from about 2,300 sandbox runs."""
    from codealign.tasks import load_tasks
    from codealign.tasks.tiny import tiny_tasks

    tasks = [*tiny_tasks("train"), *tiny_tasks("heldout"), *load_tasks("humaneval")]
    plan = [(task, _BUILTIN_PER_TASK[source_label(task)]) for task in tasks]
    return _generate(plan, seed, config, progress=progress)


def pair_records(pairs: Sequence[ReadabilityPair]) -> list[dict[str, Any]]:
    """JSONL-ready records (``write_jsonl``)."""
    return [
        {
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
            "source": p.source,
            "family": p.family,
            "degradations": list(p.degradations),
            "task_id": p.task_id,
        }
        for p in pairs
    ]
