"""Preference training on LoRA/QLoRA adapters: DPO, IPO, KTO and ORPO.

One straight-line recipe: encode the records as token ids, load the policy (the starting
adapter, or fresh LoRA), compute the reference log-probs once, then take optimiser
steps on the method's loss, logging what tells a healthy run from a failing one, and
save the adapter atomically.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from codealign.errors import InputError
from codealign.helptext import help_text
from codealign.jsonl import atomic_writer, read_jsonl
from codealign.models.config import ModelConfig
from codealign.training.losses import (
    dpo_loss,
    ipo_loss,
    kto_loss,
    nll_term,
    orpo_loss,
    pairwise_accuracy,
)
from codealign.training.sequences import TokenSequence, collate, make_sequence, sequence_logps

Method = Literal["dpo", "ipo", "kto", "orpo", "ppo", "grpo", "rloo"]
METHODS: tuple[str, ...] = ("dpo", "ipo", "kto", "orpo")  # what this recipe trains
RL_METHODS: tuple[str, ...] = ("ppo", "grpo", "rloo")  # training/ppo.py, on rollouts
REFERENCE_ADAPTER = "reference"


@dataclass
class PreferenceConfig:
    method: Method = field(
        default="dpo",
        metadata=help_text(
            "dpo: sigmoid loss on pairs; ipo: squared loss on average log-probs; kto: "
            "unpaired desirable/undesirable samples; orpo: reference-free SFT + odds ratio. "
            "In the loop also ppo, grpo or rloo: online RL on the samples' scores, with the "
            "settings of the ppo section."
        ),
    )
    beta: float = field(
        default=0.1,
        metadata=help_text(
            "DPO/IPO/KTO: strength of the pull to the reference (larger: stay closer); "
            "ORPO: the weight lambda of the odds-ratio term."
        ),
    )
    label_smoothing: float = field(
        default=0.0,
        metadata=help_text("Conservative DPO: the assumed share of flipped labels, in [0, 0.5)."),
    )
    nll_weight: float = field(
        default=0.0,
        metadata=help_text(
            "Weight of a length-normalised NLL term on the chosen (desirable) responses, as "
            "in iterative reasoning preference optimisation; keeps their likelihood up."
        ),
    )
    kto_desirable_weight: float = field(
        default=1.0, metadata=help_text("KTO: lambda_D, the weight of desirable samples.")
    )
    kto_undesirable_weight: float = field(
        default=1.0, metadata=help_text("KTO: lambda_U, the weight of undesirable samples.")
    )
    precompute_reference: bool = field(
        default=True,
        metadata=help_text(
            "Compute the reference log-probs once before training (one no-grad pass), "
            "instead of a reference forward at every step."
        ),
    )
    lr: float = field(default=5e-5, metadata=help_text("AdamW learning rate (warmup, cosine)."))
    warmup_ratio: float = field(
        default=0.1, metadata=help_text("Share of the steps spent warming the learning rate up.")
    )
    weight_decay: float = field(default=0.0, metadata=help_text("AdamW weight decay."))
    epochs: int = field(default=1, metadata=help_text("Passes over the records."))
    batch_size: int = field(default=8, metadata=help_text("Pairs (KTO: samples) per forward pass."))
    grad_accum: int = field(
        default=1, metadata=help_text("Forward passes accumulated into one optimiser step.")
    )
    max_length: int = field(
        default=1024,
        metadata=help_text("Tokens per prompt + completion; the prompt's start is cut first."),
    )
    max_grad_norm: float = field(default=1.0, metadata=help_text("Gradient clipping norm."))
    gradient_checkpointing: bool = field(
        default=False,
        metadata=help_text("Recompute activations in the backward pass: less memory, slower."),
    )
    seed: int = field(default=0, metadata=help_text("Shuffling and initialisation seed."))

    def __post_init__(self) -> None:
        if self.method not in METHODS + RL_METHODS:
            choices = ", ".join(METHODS + RL_METHODS)
            raise ValueError(f"method must be one of {choices}, got {self.method!r}")
        if self.beta <= 0 or self.lr <= 0:
            raise ValueError("beta and lr must be positive")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1 or self.max_length < 2:
            raise ValueError("epochs, batch_size and grad_accum must be >= 1, max_length >= 2")


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
    need = (
        ("prompt", "completion", "label") if method == "kto" else ("prompt", "chosen", "rejected")
    )
    records = []
    for line, record in read_jsonl(path):
        missing = [k for k in need if k not in record]
        if missing:
            what = "KTO sample" if method == "kto" else "preference pair"
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
    if method != "kto":
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


def _batch_logps(
    model: Any, units: Sequence[Unit], pad_id: int, max_length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Both sequences of every unit in one forward: (first sums, second sums, first
    lengths, second lengths)."""
    batch = collate([u.first for u in units] + [u.second for u in units], pad_id, max_length)
    sums, counts = sequence_logps(model, batch.to(device))
    n = len(units)
    return sums[:n], sums[n:], counts[:n], counts[n:]


@contextlib.contextmanager
def reference_weights(model: Any, reference: str | Path) -> Iterator[None]:
    """Run the reference policy: ``base`` turns the adapters off, ``start`` is the policy
    as it is now (only before training), a path is a frozen saved adapter."""
    if reference == "base":
        with model.disable_adapter():
            yield
    elif reference == "start":
        yield
    else:
        if REFERENCE_ADAPTER not in model.peft_config:
            model.load_adapter(str(reference), adapter_name=REFERENCE_ADAPTER)
        model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield
        finally:
            model.set_adapter("default")  # makes "default" trainable, "reference" frozen


def _reference_logps(
    model: Any,
    units: Sequence[Unit],
    reference: str | Path,
    config: PreferenceConfig,
    pad_id: int,
    device: torch.device,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference log-probs of both sequences of every unit, in eval mode (no dropout)."""
    firsts, seconds = [], []
    was_training = model.training
    model.eval()
    with torch.no_grad(), reference_weights(model, reference):
        for start in tqdm(
            range(0, len(units), config.batch_size),
            desc="reference log-probs",
            unit="batch",
            disable=not progress,
            dynamic_ncols=True,
        ):
            f, s, _, _ = _batch_logps(
                model, units[start : start + config.batch_size], pad_id, config.max_length, device
            )
            firsts.append(f.float().cpu())
            seconds.append(s.float().cpu())
    model.train(was_training)
    return torch.cat(firsts), torch.cat(seconds)


def _loss(
    config: PreferenceConfig,
    units: Sequence[Unit],
    policy: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
    ref_first: torch.Tensor | None,
    ref_second: torch.Tensor | None,
    policy_kl: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The method's loss on one batch, and what to log about it."""
    first, second, first_len, second_len = policy
    chosen_logp = (first / first_len.clamp(min=1)).detach().mean().item()
    if config.method == "orpo":
        loss, ratio_term = orpo_loss(
            first / first_len.clamp(min=1),
            second / second_len.clamp(min=1),
            -first / first_len.clamp(min=1),
            config.beta,
        )
        chosen_r = config.beta * (first / first_len.clamp(min=1)).detach()
        rejected_r = config.beta * (second / second_len.clamp(min=1)).detach()
        logs = {"odds_ratio_loss": ratio_term.item()}
    elif config.method == "kto":
        assert ref_first is not None and ref_second is not None and policy_kl is not None
        labels = torch.tensor([u.desirable for u in units], device=first.device)
        kl = (policy_kl - ref_second).mean().clamp(min=0)
        loss, rewards = kto_loss(
            first,
            ref_first,
            labels,
            kl,
            config.beta,
            config.kto_desirable_weight,
            config.kto_undesirable_weight,
        )
        if config.nll_weight and labels.any():
            loss = loss + config.nll_weight * nll_term(first[labels], first_len[labels])
        chosen_r, rejected_r = rewards[labels], rewards[~labels]
        logs = {"kl": kl.item()}
        desirable = first[labels] / first_len[labels].clamp(min=1)
        chosen_logp = desirable.detach().mean().item() if labels.any() else float("nan")
    else:
        assert ref_first is not None and ref_second is not None
        if config.method == "ipo":  # IPO works on per-token averages
            loss, chosen_r, rejected_r = ipo_loss(
                first / first_len.clamp(min=1),
                second / second_len.clamp(min=1),
                ref_first / first_len.clamp(min=1),
                ref_second / second_len.clamp(min=1),
                config.beta,
            )
        else:
            loss, chosen_r, rejected_r = dpo_loss(
                first, second, ref_first, ref_second, config.beta, config.label_smoothing
            )
        if config.nll_weight:
            loss = loss + config.nll_weight * nll_term(first, first_len)
        logs = {}
    logs["loss"] = loss.item()
    logs["chosen_logp_per_token"] = chosen_logp
    if chosen_r.numel():
        logs["chosen_reward"] = chosen_r.mean().item()
    if rejected_r.numel():
        logs["rejected_reward"] = rejected_r.mean().item()
    if config.method != "kto":
        logs["reward_accuracy"] = pairwise_accuracy(chosen_r, rejected_r)
        logs["reward_margin"] = (chosen_r - rejected_r).mean().item()
    return loss, logs


def save_adapter(
    model: Any,
    out: Path,
    metrics: dict[str, Any],
    log: Sequence[dict[str, float]],
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write the adapter, its metrics and its step log (and whatever ``extra`` writes into
    the folder) next to ``out``, then rename the folder into place: a folder that exists
    is a finished one."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), selected_adapters=["default"])
    if extra is not None:
        extra(tmp)
    with atomic_writer(tmp / "train_metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
    with atomic_writer(tmp / "train_log.jsonl") as fh:
        for row in log:
            fh.write(json.dumps(row) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def mean_of(rows: Sequence[dict[str, float]], key: str) -> float | None:
    """The mean of ``key`` over the step-log rows that have it (NaN left out)."""
    values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return sum(values) / len(values) if values else None


def train_preference(
    records: Sequence[dict[str, Any]],
    model_config: ModelConfig,
    config: PreferenceConfig,
    out: str | Path,
    *,
    reference: str | Path = "start",
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model_config``'s policy (its adapter, or fresh LoRA) on ``records`` and
    save the adapter to ``out``.

    ``reference``: "start" (the policy before this training; needs
    precompute_reference unless the start is the bare base), "base" (adapters off), or
    the path of a saved adapter, kept frozen.
    """
    from codealign.models.loading import add_lora, load_model, load_tokenizer, model_path

    if config.method not in METHODS:
        raise InputError(
            f"{config.method} trains on rollouts, not preference records: use the ppo recipe "
            "(codealign ppo, or codealign iterate --method " + config.method + ")"
        )
    started = time.perf_counter()
    out = Path(out)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(
        model_path(model_config), trust_remote_code=model_config.trust_remote_code
    )
    units = encode_records(records, config.method, tokenizer, config.seed)
    model = load_model(model_config, for_training=True)
    if not model_config.adapter:
        model = add_lora(model, model_config)
    if reference == "start" and not config.precompute_reference:
        # A live reference needs frozen weights: the bare base, or the starting adapter.
        reference = model_config.adapter or "base"
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    uses_reference = config.method != "orpo"
    training_started = time.perf_counter()  # after loading: what a benchmark compares
    ref_first = ref_second = None
    if uses_reference and config.precompute_reference:
        ref_first, ref_second = _reference_logps(
            model, units, reference, config, pad_id, device, progress
        )

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    batches_per_epoch = math.ceil(len(units) / config.batch_size)
    total = max(1, config.epochs * math.ceil(batches_per_epoch / config.grad_accum))
    warmup = int(config.warmup_ratio * total)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    log: list[dict[str, float]] = []
    bar = tqdm(
        total=total, desc=config.method, unit="step", disable=not progress, dynamic_ncols=True
    )
    step_logs: list[dict[str, float]] = []
    with bar:
        for epoch in range(config.epochs):
            order = list(range(len(units)))
            random.Random(config.seed * 7919 + epoch).shuffle(order)
            chunks = [
                order[s : s + config.batch_size] for s in range(0, len(order), config.batch_size)
            ]
            for index, chunk in enumerate(chunks):
                batch = [units[i] for i in chunk]
                policy = _batch_logps(model, batch, pad_id, config.max_length, device)
                r_first = r_second = policy_kl = None
                if uses_reference:
                    if ref_first is not None and ref_second is not None:
                        r_first, r_second = ref_first[chunk], ref_second[chunk]
                    else:
                        model.eval()  # the reference runs without dropout
                        with torch.no_grad(), reference_weights(model, reference):
                            r_first, r_second, _, _ = _batch_logps(
                                model, batch, pad_id, config.max_length, device
                            )
                        model.train()
                    r_first, r_second = r_first.to(device), r_second.to(device)
                if config.method == "kto":
                    # The mismatched sequences only feed the KL reference point, which
                    # carries no gradient.
                    policy_kl = policy[1].detach()
                loss, logs = _loss(config, batch, policy, r_first, r_second, policy_kl)
                (loss * len(batch) / (config.batch_size * config.grad_accum)).backward()  # type: ignore[no-untyped-call]
                step_logs.append(logs)
                last = index == len(chunks) - 1
                if (index + 1) % config.grad_accum == 0 or last:
                    norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    row = {k: v for k in step_logs[0] if (v := mean_of(step_logs, k)) is not None}
                    row.update(
                        step=len(log) + 1,
                        epoch=epoch,
                        grad_norm=float(norm),
                        lr=float(schedule.get_last_lr()[0]),
                    )
                    log.append(row)
                    step_logs = []
                    bar.update()
                    shown = {"loss": f"{row['loss']:.3f}"}
                    if "reward_accuracy" in row:
                        shown["acc"] = f"{row['reward_accuracy']:.2f}"
                    bar.set_postfix(shown)
    tail = log[-max(1, len(log) // 4) :]  # the last quarter of the steps
    metrics: dict[str, Any] = {
        "method": config.method,
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
    if config.method == "kto":
        # The paper wants lambda_D n_D / (lambda_U n_U) in [1, 4/3]: check it here.
        metrics["desirable"] = sum(u.desirable for u in units)
        metrics["undesirable"] = len(units) - metrics["desirable"]
        if metrics["undesirable"]:
            metrics["kto_balance"] = (config.kto_desirable_weight * metrics["desirable"]) / (
                config.kto_undesirable_weight * metrics["undesirable"]
            )
    metrics["reference"] = str(reference) if uses_reference else None
    metrics["config"] = asdict(config)
    save_adapter(model, out, metrics, log)
    return metrics
