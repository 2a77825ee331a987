"""Preference training on LoRA/QLoRA adapters: DPO, IPO, KTO and ORPO.

``train_preference`` runs the recipe in five phases:

1. encode the records as token ids (the sampler's own ids where a record carries them);
2. load the policy: the starting adapter, or fresh LoRA;
3. the reference log-probs, in one no-grad pass before any step (or live at every step);
4. train: seeded epochs of batches, accumulated into optimiser steps, each batch's loss
   from the method's entry in ``PREFERENCE_LOSSES``;
5. save the adapter atomically, with its metrics and step log.

The losses' maths is in ``losses``; this module turns a batch's log-probs into a loss and
the numbers that tell a healthy run from a failing one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from codealign import tracking
from codealign.errors import InputError
from codealign.jsonl import read_jsonl
from codealign.settings.methods import PREFERENCE_METHODS, method_spec
from codealign.settings.model import ModelConfig
from codealign.settings.preference import PreferenceConfig
from codealign.training import distributed, fsdp
from codealign.training.adapters import (
    enable_gradient_checkpointing,
    load_policy,
    load_policy_tokenizer,
    load_reference,
    pad_id_of,
    reference_weights,
    save_adapter,
)
from codealign.training.distributed import Ranks
from codealign.training.losses import (
    dpo_loss,
    ipo_loss,
    kto_loss,
    nll_term,
    orpo_loss,
    pairwise_accuracy,
)
from codealign.training.sequences import TokenSequence, collate, make_sequence, sequence_logps
from codealign.training.steps import (
    BatchLoss,
    StepLog,
    accumulate,
    batch_progress,
    batched,
    epoch_order,
    last_quarter,
    mean_of,
    optimizer_step,
    step_bar,
    warmup_cosine,
)


@dataclass(frozen=True)
class Unit:
    """One training record as token ids.

    Pairwise methods: ``first`` is chosen, ``second`` rejected. KTO: ``first`` is the
    sample, ``desirable`` its label, and ``second`` the same prompt with another record's
    completion, whose log-ratio estimates the KL reference point.
    """

    first: TokenSequence
    second: TokenSequence
    desirable: bool = True


def _ids(record: dict[str, Any], ids_key: str, text_key: str, tokenizer: Any) -> list[int]:
    if ids_key in record:
        return [int(i) for i in record[ids_key]]
    return list(tokenizer(record[text_key], add_special_tokens=False)["input_ids"])


def load_records(path: str | Path, method: str) -> list[dict[str, Any]]:
    """Pairs (``prompt``/``chosen``/``rejected``) or, for KTO, labelled samples
    (``prompt``/``completion``/``label``), as written by ``codealign pairs``."""
    labelled = method_spec(method).records == "labelled"
    need = ("prompt", "completion", "label") if labelled else ("prompt", "chosen", "rejected")
    records = []
    for line, record in read_jsonl(path):
        missing = [k for k in need if k not in record]
        if missing:
            what = "KTO sample" if labelled else "preference pair"
            raise InputError(f"not a {what}: missing {', '.join(missing)}", path=path, line=line)
        records.append(record)
    if not records:
        raise InputError("no records to train on", path=path)
    return records


def encode_records(
    records: Sequence[dict[str, Any]], method: str, tokenizer: Any, seed: int = 0
) -> list[Unit]:
    """Token ids of every record: the sampler's own ids where the record carries them."""
    units = []
    if method_spec(method).records == "pairs":
        for i, r in enumerate(records):
            prompt = _ids(r, "prompt_ids", "prompt", tokenizer)
            where = f"pair {i} (task {r.get('task_id', '?')})"
            units.append(
                Unit(
                    make_sequence(prompt, _ids(r, "chosen_ids", "chosen", tokenizer), where),
                    make_sequence(prompt, _ids(r, "rejected_ids", "rejected", tokenizer), where),
                )
            )
        return units
    if len(records) < 2:
        raise InputError("KTO needs at least two samples (the KL estimate pairs them up)")
    prompts = [_ids(r, "prompt_ids", "prompt", tokenizer) for r in records]
    completions = [_ids(r, "completion_ids", "completion", tokenizer) for r in records]
    # A fixed derangement: each prompt meets another record's completion (the KL estimate).
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    other = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    for i, r in enumerate(records):
        where = f"sample {i} (task {r.get('task_id', '?')})"
        units.append(
            Unit(
                make_sequence(prompts[i], completions[i], where),
                make_sequence(prompts[i], completions[other[i]], where),
                bool(r["label"]),
            )
        )
    return units


# -- a batch's log-probs ------------------------------------------------------------------


class SequenceLogps(NamedTuple):
    """Summed completion log-probs of each unit's two sequences, and their lengths."""

    first: torch.Tensor
    second: torch.Tensor
    first_len: torch.Tensor
    second_len: torch.Tensor

    def first_mean(self) -> torch.Tensor:
        """Per-token average log-probs of the first sequences."""
        return self.first / self.first_len.clamp(min=1)

    def second_mean(self) -> torch.Tensor:
        return self.second / self.second_len.clamp(min=1)


@dataclass(frozen=True)
class Scorer:
    """Sequence log-probs of units under ``model``, routed as it is when called."""

    model: Any
    pad_id: int
    max_length: int
    device: torch.device

    def __call__(self, units: Sequence[Unit]) -> SequenceLogps:
        """Both sequences of every unit in one forward."""
        sequences = [u.first for u in units] + [u.second for u in units]
        batch = collate(sequences, self.pad_id, self.max_length)
        sums, counts = sequence_logps(self.model, batch.to(self.device))
        n = len(units)
        return SequenceLogps(sums[:n], sums[n:], counts[:n], counts[n:])

    def reference(
        self, units: Sequence[Unit], reference: str | Path
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's sums for one batch, live: in eval mode (no dropout), no grad."""
        self.model.eval()
        with torch.no_grad(), reference_weights(self.model, reference):
            ref = self(units)
        self.model.train()
        return ref.first, ref.second


# -- the loss table -----------------------------------------------------------------------


@dataclass(frozen=True)
class LossBatch:
    """What a preference loss sees of one batch."""

    policy: SequenceLogps
    #: The reference's (first, second) sums; None for a reference-free method.
    reference: tuple[torch.Tensor, torch.Tensor] | None
    #: KTO's labels, one per unit.
    desirable: tuple[bool, ...]

    def ref(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reference is None:
            raise ValueError("this loss needs the reference log-probs")
        return self.reference


#: A method's loss on one batch, and what to log about it.
PreferenceLoss = Callable[[LossBatch, PreferenceConfig], tuple[torch.Tensor, StepLog]]


def _logs(
    loss: torch.Tensor,
    chosen_logp: float,
    chosen_r: torch.Tensor,
    rejected_r: torch.Tensor,
    *,
    paired: bool,
    extra: StepLog | None = None,
) -> StepLog:
    """What every method logs: the loss, the chosen side's per-token log-prob and the
    implicit rewards (accuracy and margin only where the sides come in pairs)."""
    logs = dict(extra or {})
    logs["loss"] = loss.item()
    logs["chosen_logp_per_token"] = chosen_logp
    if chosen_r.numel():
        logs["chosen_reward"] = chosen_r.mean().item()
    if rejected_r.numel():
        logs["rejected_reward"] = rejected_r.mean().item()
    if paired:
        logs["reward_accuracy"] = pairwise_accuracy(chosen_r, rejected_r)
        logs["reward_margin"] = (chosen_r - rejected_r).mean().item()
    return logs


def _with_nll(loss: torch.Tensor, policy: SequenceLogps, config: PreferenceConfig) -> torch.Tensor:
    if config.nll_weight:
        loss = loss + config.nll_weight * nll_term(policy.first, policy.first_len)
    return loss


def dpo_batch_loss(batch: LossBatch, config: PreferenceConfig) -> tuple[torch.Tensor, StepLog]:
    p, (ref_first, ref_second) = batch.policy, batch.ref()
    loss, chosen_r, rejected_r = dpo_loss(
        p.first, p.second, ref_first, ref_second, config.beta, config.label_smoothing
    )
    loss = _with_nll(loss, p, config)
    chosen_logp = p.first_mean().detach().mean().item()
    return loss, _logs(loss, chosen_logp, chosen_r, rejected_r, paired=True)


def ipo_batch_loss(batch: LossBatch, config: PreferenceConfig) -> tuple[torch.Tensor, StepLog]:
    p, (ref_first, ref_second) = batch.policy, batch.ref()
    loss, chosen_r, rejected_r = ipo_loss(  # IPO works on per-token averages
        p.first_mean(),
        p.second_mean(),
        ref_first / p.first_len.clamp(min=1),
        ref_second / p.second_len.clamp(min=1),
        config.beta,
    )
    loss = _with_nll(loss, p, config)
    chosen_logp = p.first_mean().detach().mean().item()
    return loss, _logs(loss, chosen_logp, chosen_r, rejected_r, paired=True)


def kto_batch_loss(batch: LossBatch, config: PreferenceConfig) -> tuple[torch.Tensor, StepLog]:
    p, (ref_first, ref_second) = batch.policy, batch.ref()
    labels = torch.tensor(batch.desirable, device=p.first.device)
    # The mismatched (second) sequences only feed the KL reference point, which carries
    # no gradient.
    kl = (p.second.detach() - ref_second).mean().clamp(min=0)
    loss, rewards = kto_loss(
        p.first,
        ref_first,
        labels,
        kl,
        config.beta,
        config.kto_desirable_weight,
        config.kto_undesirable_weight,
    )
    if config.nll_weight and labels.any():
        loss = loss + config.nll_weight * nll_term(p.first[labels], p.first_len[labels])
    desirable = p.first[labels] / p.first_len[labels].clamp(min=1)
    chosen_logp = desirable.detach().mean().item() if labels.any() else float("nan")
    return loss, _logs(
        loss, chosen_logp, rewards[labels], rewards[~labels], paired=False, extra={"kl": kl.item()}
    )


def orpo_batch_loss(batch: LossBatch, config: PreferenceConfig) -> tuple[torch.Tensor, StepLog]:
    p = batch.policy
    loss, ratio_term = orpo_loss(
        p.first_mean(), p.second_mean(), -p.first / p.first_len.clamp(min=1), config.beta
    )
    chosen_r = config.beta * p.first_mean().detach()
    rejected_r = config.beta * p.second_mean().detach()
    chosen_logp = p.first_mean().detach().mean().item()
    extra = {"odds_ratio_loss": ratio_term.item()}
    return loss, _logs(loss, chosen_logp, chosen_r, rejected_r, paired=True, extra=extra)


#: Method name -> its loss on a batch.
PREFERENCE_LOSSES: dict[str, PreferenceLoss] = {
    "dpo": dpo_batch_loss,
    "ipo": ipo_batch_loss,
    "kto": kto_batch_loss,
    "orpo": orpo_batch_loss,
}


def preference_loss(method: str) -> PreferenceLoss:
    """The loss of ``method``, from ``PREFERENCE_LOSSES``."""
    if method not in PREFERENCE_LOSSES:
        raise ValueError(f"no preference loss {method!r}; known: {', '.join(PREFERENCE_LOSSES)}")
    return PREFERENCE_LOSSES[method]


# -- the phases ---------------------------------------------------------------------------


def reference_logps(
    scorer: Scorer, units: Sequence[Unit], reference: str | Path, batch_size: int, progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase 3: the reference's sums for both sequences of every unit, once, in eval mode
    (no dropout), on the CPU."""
    firsts, seconds = [], []
    model = scorer.model
    was_training = model.training
    model.eval()
    with torch.no_grad(), reference_weights(model, reference):
        for start in batch_progress(
            range(0, len(units), batch_size), "reference log-probs", progress
        ):
            ref = scorer(units[start : start + batch_size])
            firsts.append(ref.first.float().cpu())
            seconds.append(ref.second.float().cpu())
    model.train(was_training)
    return torch.cat(firsts), torch.cat(seconds)


def batch_loss_of(
    scorer: Scorer,
    units: Sequence[Unit],
    method: str,
    config: PreferenceConfig,
    reference: str | Path,
    precomputed: tuple[torch.Tensor, torch.Tensor] | None,
) -> BatchLoss:
    """The loss of the units at some indices: the policy's forward, the reference's
    (precomputed, or live), and the method's loss on both."""
    loss_fn = preference_loss(method)
    uses_reference = method_spec(method).uses_reference

    def batch_loss(chunk: Sequence[int]) -> tuple[torch.Tensor, StepLog]:
        batch = [units[i] for i in chunk]
        policy = scorer(batch)
        ref = None
        if uses_reference:
            if precomputed is not None:
                ref = precomputed[0][list(chunk)], precomputed[1][list(chunk)]
            else:
                ref = scorer.reference(batch, reference)
            ref = ref[0].to(scorer.device), ref[1].to(scorer.device)
        return loss_fn(LossBatch(policy, ref, tuple(u.desirable for u in batch)), config)

    return batch_loss


def train_steps(
    n_records: int,
    config: PreferenceConfig,
    batch_loss: BatchLoss,
    params: Sequence[torch.nn.Parameter],
    desc: str,
    progress: bool,
    ranks: Ranks | None = None,
) -> list[StepLog]:
    """Phase 4: ``config.epochs`` seeded passes over the records; every
    ``config.grad_accum`` batches make one optimiser step (warmup, then cosine). Data
    parallel, a batch is ``batch_size`` records per process, each its own shard."""
    ranks = ranks or Ranks()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    global_batch = config.batch_size * ranks.world
    batches_per_epoch = math.ceil(n_records / global_batch)
    total = max(1, config.epochs * math.ceil(batches_per_epoch / config.grad_accum))
    schedule = warmup_cosine(optimizer, total, config.warmup_ratio)
    log: list[StepLog] = []
    with step_bar(total, desc, progress) as bar:
        for epoch in range(config.epochs):
            order = epoch_order(range(n_records), config.seed, epoch)
            for group in batched(batched(order, global_batch), config.grad_accum):
                step_logs = accumulate(group, batch_loss, ranks)
                ranks.average_gradients(params)
                grad_norm = optimizer_step(optimizer, params, config.max_grad_norm, schedule)
                row = {k: v for k in step_logs[0] if (v := mean_of(step_logs, k)) is not None}
                row = ranks.mean(row)
                row.update(
                    step=len(log) + 1,
                    epoch=epoch,
                    grad_norm=grad_norm,
                    lr=float(schedule.get_last_lr()[0]),
                )
                log.append(row)
                tracking.log_step(row)
                bar.update()
                shown = {"loss": f"{row['loss']:.3f}"}
                if "reward_accuracy" in row:
                    shown["acc"] = f"{row['reward_accuracy']:.2f}"
                bar.set_postfix(shown)
    return log


def summarise(
    method: str,
    units: Sequence[Unit],
    log: Sequence[StepLog],
    config: PreferenceConfig,
    reference: str | Path | None,
    started: float,
    training_started: float,
) -> dict[str, Any]:
    """Phase 5's metrics: the first step against the last quarter, and the run's settings."""
    tail = last_quarter(log)
    metrics: dict[str, Any] = {
        "method": method,
        "records": len(units),
        "steps": len(log),
        "seconds": round(time.perf_counter() - started, 2),
        "training_seconds": round(time.perf_counter() - training_started, 3),
        "loss_first": log[0]["loss"],
        "loss_last": mean_of(tail, "loss"),
        "chosen_logp_per_token_first": log[0].get("chosen_logp_per_token"),
        "chosen_logp_per_token_last": mean_of(tail, "chosen_logp_per_token"),
    }
    for key in ("reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward", "kl"):
        if key in log[0]:
            metrics[key] = mean_of(tail, key)
    if method_spec(method).records == "labelled":
        # The paper wants lambda_D n_D / (lambda_U n_U) in [1, 4/3]: check it here.
        metrics["desirable"] = sum(u.desirable for u in units)
        metrics["undesirable"] = len(units) - metrics["desirable"]
        if metrics["undesirable"]:
            metrics["kto_balance"] = (config.kto_desirable_weight * metrics["desirable"]) / (
                config.kto_undesirable_weight * metrics["undesirable"]
            )
    metrics["reference"] = None if reference is None else str(reference)
    metrics["config"] = asdict(config)
    return metrics


def train_preference(
    records: Sequence[dict[str, Any]],
    model_config: ModelConfig,
    config: PreferenceConfig,
    out: str | Path,
    *,
    method: str = "dpo",
    reference: str | Path = "start",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model_config``'s policy (its adapter, or fresh LoRA) on ``records`` and
    save the adapter to ``out``.

    ``reference``: "start" (the policy before this training; needs
    precompute_reference unless the start is the bare base), "base" (adapters off), or
    the path of a saved adapter, kept frozen.
    """
    if method not in PREFERENCE_METHODS:
        raise InputError(
            f"{method} trains on rollouts, not preference records: use the ppo recipe "
            f"(codealign ppo, or codealign iterate --method {method})"
        )
    started = time.perf_counter()
    ranks = distributed.current()  # one process, or those of accelerate launch
    torch.manual_seed(config.seed)  # after accelerate's start: the same fresh LoRA everywhere
    model_config = ranks.model_config(model_config)
    progress = progress and ranks.main
    # 1. encode (before the model loads: a bad record fails fast)
    tokenizer = load_policy_tokenizer(model_config)
    units = encode_records(records, method, tokenizer, config.seed)
    # 2. the policy
    model = load_policy(model_config)
    if reference == "start" and not config.precompute_reference:
        # A live reference needs frozen weights: the bare base, or the starting adapter.
        reference = model_config.adapter or "base"
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if ranks.sharded:
        load_reference(model, reference)  # every adapter in place before FSDP shards
        fsdp.shard(model, ranks.world, fsdp.FsdpOptions.from_env())
    device = next(model.parameters()).device
    scorer = Scorer(model, pad_id_of(tokenizer), config.max_length, device)
    uses_reference = method_spec(method).uses_reference
    training_started = time.perf_counter()  # after loading: what a benchmark compares
    # 3. the reference log-probs
    precomputed = None
    if uses_reference and config.precompute_reference:
        precomputed = reference_logps(scorer, units, reference, config.batch_size, progress)
    # 4. train; the trainable set is taken after the reference pass, which may have
    # loaded a frozen reference adapter.
    trainable = [p for p in model.parameters() if p.requires_grad]
    batch_loss = batch_loss_of(scorer, units, method, config, reference, precomputed)
    model.train()
    log = train_steps(len(units), config, batch_loss, trainable, method, progress, ranks)
    # 5. save (the main process; the others wait until the adapter is in place)
    metrics = summarise(
        method,
        units,
        log,
        config,
        reference if uses_reference else None,
        started,
        training_started,
    )
    metrics.update(
        processes=ranks.world,
        per_device_batch=config.batch_size,
        effective_batch=config.batch_size * ranks.world * config.grad_accum,
        sharding="fsdp" if ranks.sharded else "none",
        weight_bytes_per_process=fsdp.local_parameter_bytes(model),
    )
    state = fsdp.gathered_adapters(model)  # sharded: every process takes part
    if ranks.main:
        save_adapter(model, Path(out), metrics, log, state=state)
    ranks.wait()
    return metrics
