"""Training a reward model on preference pairs with the Bradley-Terry loss.

One straight-line recipe: load pairs, hold some out (whole families where pairs name
them), build the model, train, evaluate, calibrate, save. Checkpoints let an
interrupted run resume where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from codealign import tracking
from codealign.errors import InputError
from codealign.jsonl import atomic_writer, read_jsonl
from codealign.models.reward import RewardModel
from codealign.settings.reward_model import RewardModelConfig
from codealign.training import distributed
from codealign.training.losses import bradley_terry_loss, pairwise_accuracy


def load_pairs(path: str | Path) -> list[dict[str, Any]]:
    """Preference pairs from JSONL (prompt, chosen, rejected[, margin, family]) or any
    ``datasets`` source the task loaders accept (a save_to_disk folder, parquet, hf:...)."""
    spec = str(path)
    rows: list[tuple[str, dict[str, Any]]]
    if spec.endswith((".jsonl", ".jsonl.gz")):
        rows = [(f"{spec}:{line}", record) for line, record in read_jsonl(spec)]
    else:
        from codealign.tasks.hf import dataset_rows

        rows = [(f"{spec}: row {i}", dict(r)) for i, r in dataset_rows(spec)]
    pairs = []
    for where, record in rows:
        for name in ("chosen", "rejected"):
            if not isinstance(record.get(name), str):
                raise InputError(f"{where}: field {name!r} must be a string")
        prompt = record.get("prompt", "")
        if not isinstance(prompt, str):
            raise InputError(f"{where}: field 'prompt' must be a string")
        margin, weight = record.get("margin", 1.0), record.get("weight", 1.0)
        if not isinstance(margin, int | float) or isinstance(margin, bool):
            raise InputError(f"{where}: field 'margin' must be a number")
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
            raise InputError(f"{where}: field 'weight' must be a number > 0")
        pairs.append({**record, "prompt": prompt, "margin": float(margin), "weight": float(weight)})
    if not pairs:
        raise InputError("no preference pairs", path=spec)
    return pairs


def split_pairs(
    pairs: list[dict[str, Any]], fraction: float, seed: int, families: list[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and held-out pairs. Whole families (else whole prompts) go to one side, so the
    held-out score measures what the model learned, not what it memorised."""
    key = "family" if all("family" in p for p in pairs) else "prompt"
    groups = sorted({str(p[key]) for p in pairs})
    if families is not None:
        unknown = set(families) - set(groups)
        if unknown:
            raise InputError(f"holdout families not in the pairs: {', '.join(sorted(unknown))}")
        held = set(families)
    else:
        random.Random(seed).shuffle(groups)
        held, count = set(), 0
        for group in groups:
            if count >= fraction * len(pairs):
                break
            held.add(group)
            count += sum(str(p[key]) == group for p in pairs)
    return (
        [p for p in pairs if str(p[key]) not in held],
        [p for p in pairs if str(p[key]) in held],
    )


@torch.no_grad()
def evaluate_pairs(
    model: RewardModel, pairs: list[dict[str, Any]], batch_size: int = 32
) -> dict[str, Any]:
    """Pairwise accuracy and mean reward gap; also every reward, for calibration."""
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        chosen.append(model.rewards([model.encode(p["prompt"], p["chosen"]) for p in batch]))
        rejected.append(model.rewards([model.encode(p["prompt"], p["rejected"]) for p in batch]))
    c, r = torch.cat(chosen).cpu(), torch.cat(rejected).cpu()
    return {
        "pairs": len(pairs),
        "accuracy": pairwise_accuracy(c, r),
        "mean_gap": float((c - r).mean()),
        "rewards": torch.cat([c, r]).tolist(),
    }


def _trainable(model: RewardModel) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(
    path: Path, model: RewardModel, optimizer: torch.optim.Optimizer, schedule: Any, step: int
) -> None:
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "params": {n: p.detach().cpu() for n, p in _trainable(model).items()},
        "torch_rng": torch.get_rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a torn checkpoint


def _load_checkpoint(
    path: Path, model: RewardModel, optimizer: torch.optim.Optimizer, schedule: Any
) -> int:
    state = torch.load(path, map_location="cpu", weights_only=False)
    params = _trainable(model)
    with torch.no_grad():
        for name, value in state["params"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def train_reward_model(
    pairs: list[dict[str, Any]],
    config: RewardModelConfig,
    out: str | Path,
    *,
    progress: bool = True,
    init: str | Path | None = None,
) -> dict[str, Any]:
    """Train, evaluate on held-out pairs, calibrate and save; returns the metrics.
    ``init``: a trained (fully fine-tuned) reward model to continue from instead of a
    fresh one on ``config.base`` (a refresh on new pairs)."""
    out = Path(out)
    checkpoint = out / "checkpoint" / "state.pt"
    ranks = distributed.current()  # one process, or those of accelerate launch
    if ranks.sharded:
        raise InputError(
            "train-rm does not shard its model (a reward model small enough to score every "
            "sample of a round trains whole on each process): launch it without --use_fsdp"
        )
    if ranks.world > 1:
        config = dataclasses.replace(config, device=ranks.device)
        progress = progress and ranks.main
    torch.manual_seed(config.seed)
    families = (
        [f.strip() for f in config.holdout_families.split(",") if f.strip()]
        if config.holdout_families
        else None
    )
    train, held = split_pairs(pairs, config.eval_fraction, config.seed, families)
    if not train:
        raise InputError("every pair was held out: nothing left to train on")
    model = _initial_model(config, init)
    encoded = [
        (
            model.encode(p["prompt"], p["chosen"]),
            model.encode(p["prompt"], p["rejected"]),
            float(p.get("margin", 1.0)),
            float(p.get("weight", 1.0)),  # human labels may count more than synthetic pairs
        )
        for p in train
    ]
    optimizer = torch.optim.AdamW(_trainable(model).values(), lr=config.lr, weight_decay=0.0)
    # Data parallel, a step's batch is batch_size pairs per process, each its own shard.
    global_batch = config.batch_size * ranks.world
    steps_per_epoch = math.ceil(len(encoded) / global_batch)
    total = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    done = _load_checkpoint(checkpoint, model, optimizer, schedule) if checkpoint.exists() else 0
    model.train()
    bar = tqdm(
        total=total,
        initial=done,
        desc="reward model",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    step = 0
    with bar:
        for epoch in range(config.epochs):
            order = list(range(len(encoded)))
            random.Random(config.seed * 7919 + epoch).shuffle(order)
            for start in range(0, len(order), global_batch):
                step += 1
                if step <= done:
                    continue  # resumed: this step was taken before the interruption
                whole = order[start : start + global_batch]
                mine = ranks.shard(whole)
                batch = [encoded[i] for i in mine or whole[:1]]  # an empty shard: weight 0
                loss, chosen, rejected = _pair_loss(model, batch, config.margin)
                # The mean over the global batch, once the processes' gradients are averaged.
                weighted = loss * len(mine) * ranks.world / len(whole)
                weighted.backward()  # type: ignore[no-untyped-call]
                ranks.average_gradients(list(_trainable(model).values()))
                torch.nn.utils.clip_grad_norm_(_trainable(model).values(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
                acc = pairwise_accuracy(chosen.detach(), rejected.detach())
                bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
                row = {"step": step, "loss": loss.item(), "accuracy": acc}
                row["lr"] = float(schedule.get_last_lr()[0])
                tracking.log_step(ranks.mean(row))  # on every process: the mean is collective
                if step % config.checkpoint_every == 0 and ranks.main:
                    _save_checkpoint(checkpoint, model, optimizer, schedule, step)
    metrics: dict[str, Any] = {
        "train_pairs": len(train),
        "heldout_pairs": len(held),
        "processes": ranks.world,
        "effective_batch": global_batch,
    }
    if ranks.main:  # the main process evaluates, calibrates and saves
        _calibrate_and_save(model, train, held, config, out, metrics)
    ranks.wait()
    return metrics


def _initial_model(config: RewardModelConfig, init: str | Path | None) -> RewardModel:
    """A fresh reward model on ``config.base``, or the trained ``init`` with every weight
    trainable again (a refresh)."""
    if init is None:
        return RewardModel.create(
            config.model_config(), finetune=config.finetune, max_length=config.max_length
        )
    model = RewardModel.load(init, device=config.model_config().device)
    if model.meta.finetune != "full":
        raise InputError(f"{init}: only a fully fine-tuned reward model can be continued")
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def _pair_loss(
    model: RewardModel, batch: list[tuple[Any, Any, float, float]], margin_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Bradley-Terry loss of a batch of encoded (chosen, rejected, margin, weight)
    pairs, and the two sides' rewards."""
    rewards = model.rewards([c for c, _, _, _ in batch] + [r for _, r, _, _ in batch])
    chosen, rejected = rewards[: len(batch)], rewards[len(batch) :]
    margin = (
        torch.tensor([m for _, _, m, _ in batch], device=rewards.device) * margin_scale
        if margin_scale
        else None
    )
    weights = [w for _, _, _, w in batch]
    weight = (
        None if all(w == 1.0 for w in weights) else torch.tensor(weights, device=rewards.device)
    )
    return bradley_terry_loss(chosen, rejected, margin, weight), chosen, rejected


def _calibrate_and_save(
    model: RewardModel,
    train: list[dict[str, Any]],
    held: list[dict[str, Any]],
    config: RewardModelConfig,
    out: Path,
    metrics: dict[str, Any],
) -> None:
    """Evaluate on the held-out pairs, center the rewards there, and save the model with
    its metrics (the resume checkpoint goes once the model is in place)."""
    calibration = evaluate_pairs(model, held or train[:256])
    model.meta.center = statistics.median(calibration["rewards"])
    if held:
        metrics.update(
            heldout_accuracy=calibration["accuracy"],
            heldout_mean_gap=calibration["mean_gap"],
            heldout_families=sorted({str(p.get("family", "")) for p in held}),
        )
    train_eval = evaluate_pairs(model, train[:512])
    metrics.update(
        train_accuracy=train_eval["accuracy"],
        train_mean_gap=train_eval["mean_gap"],
        center=model.meta.center,
        config=asdict(config),
    )
    model.save(out)
    with atomic_writer(out / "metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
    checkpoint = out / "checkpoint" / "state.pt"
    if checkpoint.exists():
        checkpoint.unlink()
        checkpoint.parent.rmdir()
