"""The stages of a round, and the tables the loop walks.

Each stage is a function of the run and the round number that writes its output through
the run layout, atomically; a stage whose output (its marker) exists is finished.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codealign.jsonl import read_jsonl, write_json, write_jsonl
from codealign.loop.layout import PreferenceSummary, RolloutSummary, RoundPaths
from codealign.loop.refresh import current_model, refresh_stage
from codealign.samples import in_task_order, load_samples
from codealign.settings.methods import method_spec
from codealign.settings.model import SamplingConfig
from codealign.tasks import Task

if TYPE_CHECKING:
    from codealign.execution import ExecResult
    from codealign.loop.state import RunState


def _sampling(run: RunState, n: int, seed: int, *, held_out: bool = False) -> SamplingConfig:
    """The sampling settings of one stage: ``n`` samples, ``seed``; the held-out
    evaluation at ``iterate.eval_temperature`` when one is set."""
    sampling = dataclasses.replace(run.config.sampling, n=n, seed=seed)
    temperature = run.config.iterate.eval_temperature
    if held_out and temperature is not None:
        sampling = dataclasses.replace(sampling, temperature=temperature)
    return sampling


def sample(
    run: RunState,
    out: Path,
    tasks: Sequence[Task],
    adapter_round: int,
    n: int,
    seed: int,
    *,
    held_out: bool = False,
) -> None:
    """``n`` completions per task from the policy after ``adapter_round``."""
    sampling = _sampling(run, n, seed, held_out=held_out)
    groups = run.backends.sample(tasks, run.policy(adapter_round), sampling, run.progress)
    records = in_task_order(tasks, groups)
    if run.main:
        write_jsonl(out, records)


def execute(run: RunState, samples_path: Path, out: Path, tasks: dict[str, Task]) -> None:
    """Every sample against its task's tests, in the sandbox (resumable: ``OUT.partial``)."""
    from codealign.execution import execute_samples, write_results

    samples = load_samples(samples_path, tasks)
    checkpoint = out.with_name(out.name + ".partial")
    results = execute_samples(
        tasks, samples, run.config.execution, checkpoint=checkpoint, progress=run.progress
    )
    write_results(out, samples, results, checkpoint)


def sample_and_execute(
    run: RunState,
    samples_out: Path,
    results_out: Path,
    tasks: Sequence[Task],
    r: int,
    n: int,
    seed: int,
    *,
    held_out: bool = False,
) -> None:
    """``sample`` and ``execute`` at once (``sampling.overlap``): each task's samples run
    in the sandbox while the next tasks are being sampled."""
    from codealign.loop.overlap import identity
    from codealign.loop.overlap import sample_and_execute as overlapped

    policy, sampling = run.policy(r), _sampling(run, n, seed, held_out=held_out)
    overlapped(
        tasks,
        lambda missing: run.backends.sample(missing, policy, sampling, run.progress),
        n,
        run.config.execution,
        samples_out=samples_out,
        results_out=results_out,
        sampled_by=identity(policy, sampling),
        progress=run.progress,
    )


def read_results(path: Path) -> list[ExecResult]:
    from codealign.execution import ExecResult

    return [ExecResult.from_dict(record) for _, record in read_jsonl(path)]


def rows(path: Path) -> list[dict[str, Any]]:
    return [record for _, record in read_jsonl(path)]


# -- the stages of a training round ----------------------------------------------------


def sample_stage(run: RunState, r: int) -> None:
    it = run.config.iterate
    seed = run.config.sampling.seed + 1000 * r
    paths = run.layout.round(r)
    sample(run, paths.samples, run.training_prompts(r), r - 1, it.samples_per_prompt, seed)


def execute_stage(run: RunState, r: int) -> None:
    paths = run.layout.round(r)
    execute(run, paths.samples, paths.results, run.train_tasks)


def sample_execute_stage(run: RunState, r: int) -> None:
    it = run.config.iterate
    seed = run.config.sampling.seed + 1000 * r
    paths = run.layout.round(r)
    tasks = run.training_prompts(r)
    sample_and_execute(run, paths.samples, paths.results, tasks, r - 1, it.samples_per_prompt, seed)


def score_stage(run: RunState, r: int) -> None:
    """Score every sample on the tests the reward may see; the held-back tests feed only
    the overoptimisation monitor."""
    from codealign.scoring.base import Item
    from codealign.scoring.combine import scored_rows
    from codealign.scoring.heldback import heldback_tests, monitor, reward_view

    paths = run.layout.round(r)
    samples = load_samples(paths.samples, run.train_tasks)
    results = read_results(paths.results)
    it = run.config.iterate
    held = heldback_tests(run.train_tasks, it.heldback_fraction, it.heldback_min_tests)
    items = [
        Item(
            run.train_tasks[s.task_id],
            s,
            reward_view(res, held),
            s.program(run.train_tasks[s.task_id]),
        )
        for s, res in zip(samples, results, strict=True)
    ]
    write_json(paths.monitor, monitor(results, held))
    scoring = run.config.scoring
    refreshed = current_model(run, r)
    if refreshed is not None:  # iterate.rm_refresh_every: the latest refreshed model scores
        scoring = dataclasses.replace(scoring, readability_models=str(refreshed))
    write_jsonl(paths.scored, scored_rows(items, scoring))


def pairs_stage(run: RunState, r: int) -> None:
    """Preference pairs (KTO: labelled samples of the prompts with both labels)."""
    from codealign.scoring.pairs import kto_labels, make_pairs
    from codealign.scoring.report import signal_report

    paths = run.layout.round(r)
    scored = rows(paths.scored)
    scoring = run.config.scoring
    made, dropped = make_pairs(scored, scoring)
    kto = method_spec(run.config.iterate.method).records == "labelled"
    records = kto_labels(scored, scoring) if kto else made
    if kto:
        # Prompts whose samples all share one label teach KTO nothing about the task.
        labels: dict[str, set[bool]] = {}
        for rec in records:
            labels.setdefault(rec["task_id"], set()).add(rec["label"])
        records = [rec for rec in records if len(labels[rec["task_id"]]) == 2]
    summary: PreferenceSummary = {
        "records": len(records),
        "pairs": len(made),
        "prompts": len({row["task_id"] for row in scored}),
        "prompts_with_pairs": len({p["task_id"] for p in made}),
        "prompts_skipped": sum(dropped.values()),
        "skip_reasons": dict(dropped.most_common()),
        "signals": signal_report(scored, scoring),
        "monitor": json.loads(paths.monitor.read_text("utf-8")),
    }
    write_json(paths.pairs_summary, dict(summary))
    write_jsonl(paths.pairs, records)


def rewards_stage(run: RunState, r: int) -> None:
    """PPO/GRPO/RLOO: every sample is a rollout, its score the reward."""
    import torch

    from codealign.scoring.report import signal_report
    from codealign.training.losses import zero_variance_fraction

    paths = run.layout.round(r)
    scored = rows(paths.scored)
    keep = ("task_id", "sample_index", "prompt_ids", "completion_ids", "finish_reason")
    rollouts = [
        {k: row[k] for k in keep if k in row}
        | {"reward": row["score"], "pass_rate": row["pass_rate"]}
        for row in scored
    ]
    groups = {t: i for i, t in enumerate(dict.fromkeys(row["task_id"] for row in scored))}
    group_ids = torch.tensor([groups[row["task_id"]] for row in scored])
    summary: RolloutSummary = {
        "records": len(rollouts),
        "prompts": len(groups),
        "prompts_skipped": 0,
        "skip_reasons": {},
        "zero_variance_groups": zero_variance_fraction(
            torch.tensor([row["score"] for row in scored]), group_ids
        ),
        "zero_variance_pass_groups": zero_variance_fraction(
            torch.tensor([row["pass_rate"] for row in scored]), group_ids
        ),
        "signals": signal_report(scored, run.config.scoring),
        "monitor": json.loads(paths.monitor.read_text("utf-8")),
    }
    write_json(paths.rollouts_summary, dict(summary))
    write_jsonl(paths.rollouts, rollouts)


def train_preference_stage(run: RunState, r: int) -> None:
    paths = run.layout.round(r)
    records = rows(paths.pairs)
    if not records:
        run.log(f"round {r}: no preference data; the policy stays as it is")
        if run.main:
            write_json(paths.train, {"skipped": "no preference data", "records": 0})
        return
    metrics = run.backends.train_preference(
        records,
        run.policy(r - 1),
        run.config.train,
        paths.adapter,
        method=run.config.iterate.method,
        reference=run.reference(),
        progress=run.progress,
    )
    if run.main:  # every process trained its shard; the adapter is the main one's
        write_json(paths.train, metrics)


def train_rl_stage(run: RunState, r: int) -> None:
    paths = run.layout.round(r)
    metrics = run.backends.train_rl(
        rows(paths.rollouts),
        run.policy(r - 1),
        run.config.ppo,
        paths.adapter,
        method=run.config.iterate.method,
        temperature=run.config.sampling.temperature,
        reference=run.reference(),
        progress=run.progress,
    )
    if run.main:  # every process trained its shard; the adapter is the main one's
        write_json(paths.train, metrics)


def evaluate_stage(run: RunState, r: int) -> None:
    """pass@k of the policy after round ``r`` on the held-out tasks."""
    from codealign.evaluation import evaluation_report

    paths = run.layout.round(r).eval
    it = run.config.iterate
    tasks = list(run.eval_tasks.values())
    seed = run.config.sampling.seed  # the same seed every round: paired comparisons
    n = it.eval_samples
    if run.overlap and not paths.results.exists():
        sample_and_execute(run, paths.samples, paths.results, tasks, r, n, seed, held_out=True)
    if not paths.samples.exists():  # every process: a shard
        sample(run, paths.samples, tasks, r, n, seed, held_out=True)
    if not run.main:
        return
    if not paths.results.exists():
        execute(run, paths.samples, paths.results, run.eval_tasks)
    report = evaluation_report(
        run.eval_tasks, read_results(paths.results), it.ks(), rows(paths.samples)
    )
    write_json(paths.metrics, report)


# -- the tables --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage: its name, what it does, and the file whose existence marks it done."""

    name: str
    run: Callable[[RunState, int], None]
    marker: Callable[[RoundPaths], Path]


EVALUATE = Stage("evaluate", evaluate_stage, lambda p: p.eval.metrics)
PREFERENCE_STAGES = (
    Stage("sample", sample_stage, lambda p: p.samples),
    Stage("execute", execute_stage, lambda p: p.results),
    Stage("score", score_stage, lambda p: p.scored),
    Stage("pairs", pairs_stage, lambda p: p.pairs),
    Stage("train", train_preference_stage, lambda p: p.train),
    EVALUATE,
)
RL_STAGES = (
    *PREFERENCE_STAGES[:3],
    Stage("rewards", rewards_stage, lambda p: p.rollouts),
    Stage("train", train_rl_stage, lambda p: p.train),
    EVALUATE,
)
#: ``sampling.overlap``: sample and execute as one stage, finished when the results are.
SAMPLE_EXECUTE = Stage("sample+execute", sample_execute_stage, lambda p: p.results)


#: ``iterate.rm_refresh_every``: the readability model refreshed before the round is scored.
REFRESH = Stage("refresh", refresh_stage, lambda p: p.refresh)


def stage_table(rl: bool, overlap: bool, refresh: bool = False) -> tuple[Stage, ...]:
    """The stages of one round of a method's recipe."""
    table: tuple[Stage, ...] = RL_STAGES if rl else PREFERENCE_STAGES
    table = (SAMPLE_EXECUTE, *table[2:]) if overlap else table
    if refresh:
        at = next(i for i, stage in enumerate(table) if stage.name == "score")
        table = (*table[:at], REFRESH, *table[at:])
    return table
