"""The readability model refreshed on the policy's own distribution (``iterate.
rm_refresh_every``), so the policy cannot settle into the blind spots of a model trained
once on other code.

In a refresh round, before the round is scored:
1. the round's correct samples (the first of each task, up to ``rm_refresh_pairs``
   tasks) stand in for canonical solutions, and the built-in degradations make each a
   less readable twin, checked equivalent in the sandbox;
2. the developers' labels (``human_labels``) join those pairs, weighted, less a held-out
   share;
3. the current readability model (the latest refreshed one, else ``scoring.
   readability_models``' first, else the built-in) trains on from where it is, and the
   new one scores this round and the next ones;
4. ``round-N/readability.json`` records the pairs, and the accuracy on the held-out human
   labels before and after.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codealign.jsonl import write_json
from codealign.samples import load_samples

if TYPE_CHECKING:
    from codealign.loop.state import RunState


def due(run: RunState, r: int) -> bool:
    every = run.config.iterate.rm_refresh_every
    return every > 0 and r > 0 and r % every == 0


def current_model(run: RunState, r: int) -> Path | None:
    """The readability model that scores round ``r``: the latest refreshed in a round up
    to ``r``; None when none was (the configured or built-in one then)."""
    for k in range(r, 0, -1):
        paths = run.layout.round(k)
        if paths.refresh.exists():
            return paths.readability
    return None


def _base_model(run: RunState, r: int) -> Path:
    found = current_model(run, r - 1)
    if found is not None:
        return found
    configured = [m.strip() for m in (run.config.scoring.readability_models or "").split(",")]
    if configured and configured[0]:
        return Path(configured[0])
    from codealign.readability.default_model import ensure_default_readability_model

    return ensure_default_readability_model()


def _policy_pairs(run: RunState, r: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Degraded twins of the round's correct programs, checked in the sandbox."""
    from codealign.execution.records.results import read_results
    from codealign.readability.pairs import generate_pairs, pair_records

    paths = run.layout.round(r)
    samples = load_samples(paths.samples, run.train_tasks)
    results = read_results(paths.results, samples)
    chosen: dict[str, Any] = {}
    for sample in samples:
        task = run.train_tasks[sample.task_id]
        if results[sample.index].passed and task.task_id not in chosen:
            program = sample.program(task)
            chosen[task.task_id] = dataclasses.replace(task, canonical_solution=program)
    tasks = list(chosen.values())[: run.config.iterate.rm_refresh_pairs]
    pairs, counts = generate_pairs(tasks, per_task=1, config=run.config.execution)
    return pair_records(pairs), counts


def refresh_stage(run: RunState, r: int) -> None:
    """Train the readability model on from the current one (see the module's docstring)."""
    from codealign.models.reward import RewardModel
    from codealign.readability.default_model import default_config
    from codealign.readability.human import human_pairs, split_human
    from codealign.training.reward_model import evaluate_pairs, train_reward_model

    it = run.config.iterate
    paths = run.layout.round(r)
    base = _base_model(run, r)
    synthetic, counts = _policy_pairs(run, r)
    human_train: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    if it.human_labels and it.human_pairs and Path(it.human_labels).exists():
        labelled = human_pairs(it.human_labels, it.human_pairs, it.human_weight)
        human_train, held = split_human(labelled, 0.25)
    if not synthetic and not human_train:
        raise RuntimeError(f"round {r}: no correct sample to refresh the readability model on")
    config = dataclasses.replace(default_config(), epochs=1, lr=1e-4, eval_fraction=0.0)
    train_reward_model(
        synthetic + human_train, config, paths.readability, progress=run.progress, init=base
    )
    before = after = None
    if held:
        before = evaluate_pairs(RewardModel.load(base, device="cpu"), held)["accuracy"]
        after = evaluate_pairs(RewardModel.load(paths.readability, device="cpu"), held)["accuracy"]
    write_json(
        paths.refresh,
        {
            "round": r,
            "from": str(base),
            "policy_pairs": len(synthetic),
            "policy_pair_counts": counts,
            "human_pairs": len(human_train),
            "human_heldout": len(held),
            "human_heldout_accuracy_before": before,
            "human_heldout_accuracy_after": after,
        },
    )
