"""Only the ambiguous pairs go to people: readability pairs proposed from a run's own
samples, ranked by how unsure the readability ensemble is.

A pair is two different programs of one task that both pass every test, so a label says
which reads better and nothing else. Under the Bradley-Terry model each reward model k
prefers ``a`` with probability p_k = σ(r_k(a) - r_k(b)); a score s = σ(r - center)
gives r_k(a) - r_k(b) = logit(s_k(a)) - logit(s_k(b)). Pairs are ranked by the spread of
the p_k (the models disagree) and then by how close their mean is to 0.5 (the ensemble
cannot tell); with one model only the second counts. A budget (a count, or a share of
all candidate pairs) and a cap per task (so the labels cover many tasks) pick the pairs.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.jsonl import read_jsonl
from codealign.tasks import Task


@dataclass(frozen=True)
class Candidate:
    """One correct sample: what the model wrote (``response``, what the reward models
    score) and the program it makes."""

    task_id: str
    prompt: str
    response: str
    program: str


@dataclass(frozen=True)
class Proposal:
    a: Candidate
    b: Candidate
    preference: float  # the ensemble's mean probability that a reads better
    spread: float  # the standard deviation of the models' probabilities
    per_model: tuple[float, ...]

    @property
    def pair_id(self) -> str:
        blob = f"{self.a.task_id}\0{self.a.program}\0{self.b.program}".encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def record(self) -> dict[str, Any]:
        """A row of the proposals file ``codealign annotate`` reads."""
        return {
            "pair_id": self.pair_id,
            "task_id": self.a.task_id,
            "prompt": self.a.prompt,
            "a": self.a.program,
            "b": self.b.program,
            "response_a": self.a.response,
            "response_b": self.b.response,
            "preference_a": round(self.preference, 6),
            "spread": round(self.spread, 6),
            "per_model": [round(p, 6) for p in self.per_model],
        }


def correct_samples(
    scored: str | Path, tasks: dict[str, Task], per_task: int = 8
) -> list[Candidate]:
    """The distinct programs of a scored samples file (``round-N/scored.jsonl``) that pass
    every test, at most ``per_task`` of each task (in the file's order)."""
    out: list[Candidate] = []
    seen: dict[str, set[str]] = {}
    for line, row in read_jsonl(scored):
        status = row.get("details", {}).get("execution", {}).get("status")
        if status != "passed":
            continue
        task = tasks.get(str(row.get("task_id")))
        if task is None:
            why = f"task {row.get('task_id')!r} is not in the run's tasks"
            raise InputError(why, path=scored, line=line)
        completion, solution = row.get("completion"), row.get("solution")
        program = task.program(completion=completion, solution=solution)
        mine = seen.setdefault(task.task_id, set())
        key = "\n".join(text.rstrip() for text in program.strip().splitlines())
        if key in mine or len(mine) >= per_task:
            continue
        mine.add(key)
        out.append(Candidate(task.task_id, task.prompt, solution or completion or "", program))
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def preference(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Each model's probability that the response it scored ``a`` reads better than the
    one it scored ``b`` (scores are σ(reward - center))."""
    return [1 / (1 + math.exp(-(_logit(x) - _logit(y)))) for x, y in zip(a, b, strict=True)]


def rank(candidates: Sequence[Candidate], scores: Sequence[Sequence[float]]) -> list[Proposal]:
    """Every pair of one task's candidates, most ambiguous first. ``scores``: each
    candidate's per-model readability scores."""
    by_task: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        by_task.setdefault(c.task_id, []).append(i)
    proposals = []
    for indices in by_task.values():
        for i, j in itertools.combinations(indices, 2):
            p = preference(scores[i], scores[j])
            mean = statistics.fmean(p)
            spread = statistics.pstdev(p) if len(p) > 1 else 0.0
            proposals.append(Proposal(candidates[i], candidates[j], mean, spread, tuple(p)))
    proposals.sort(key=lambda q: (-q.spread, abs(q.preference - 0.5), q.pair_id))
    return proposals


def budgeted(proposals: Sequence[Proposal], budget: float, per_task: int) -> list[Proposal]:
    """The first pairs of ``proposals`` within ``budget`` (a count, or below 1 a share of
    them), at most ``per_task`` of a task."""
    if budget <= 0:
        raise InputError("the budget must be a count >= 1 or a share in (0, 1)")
    count = math.ceil(budget * len(proposals)) if budget < 1 else int(budget)
    taken: list[Proposal] = []
    per: dict[str, int] = {}
    for q in proposals:
        if len(taken) == count:
            break
        if per.get(q.a.task_id, 0) < per_task:
            per[q.a.task_id] = per.get(q.a.task_id, 0) + 1
            taken.append(q)
    return taken


def propose(
    candidates: Sequence[Candidate],
    models: Sequence[str | Path],
    budget: float,
    per_task: int = 2,
) -> list[Proposal]:
    """The ambiguous pairs among ``candidates``, by the readability ensemble ``models``
    (the default model when empty)."""
    from codealign.readability.scorer import ReadabilityScorer

    if not candidates:
        raise InputError("no task has two different correct samples to compare")
    scorer = ReadabilityScorer(models, device="cpu")
    scores = scorer.score([c.prompt for c in candidates], [c.response for c in candidates])
    return budgeted(rank(candidates, [s.per_model for s in scores]), budget, per_task)
