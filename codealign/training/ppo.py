"""Online RL on a LoRA/QLoRA policy: PPO with a value head, and GRPO and RLOO.

One straight-line recipe over one batch of rollouts (sampled completions, their token
ids and their scores):

1. one no-grad pass: the rollout policy's token log-probs and entropies, the
   reference's log-probs, and (PPO) the value of every state;
2. rewards: the score at the last token, a per-token KL penalty against the reference;
3. advantages: GAE on the value head's estimates (PPO), or the other samples of the same
   prompt as the baseline (GRPO: group mean and standard deviation; RLOO: leave one out);
4. epochs of clipped updates over shuffled minibatches;
5. the KL coefficient adapted towards a target (optional), and everything saved.

One base model serves every role: the policy is the ``default`` LoRA adapter, the
reference is the same base with the adapters switched off (or a frozen saved adapter),
and the value head reads the policy's hidden states (or those of a second LoRA adapter,
``value``). The value head, the value adapter and the KL coefficient are saved with the
policy's adapter, so the next round continues from them.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from codealign.errors import InputError
from codealign.helptext import help_text
from codealign.models.config import ModelConfig
from codealign.training.dpo import RL_METHODS, mean_of, reference_weights, save_adapter
from codealign.training.losses import (
    adaptive_kl_coef,
    clipped_policy_loss,
    clipped_value_loss,
    explained_variance,
    gae,
    group_advantages,
    kl_estimate,
    masked_mean,
    whiten,
    zero_variance_fraction,
)
from codealign.training.sequences import (
    TokenSequence,
    collate,
    completion_hidden,
    completion_outputs,
    make_sequence,
)

VALUE_ADAPTER = "value"
VALUE_HEAD_FILE = "value_head.safetensors"
STATE_FILE = "rl_state.json"


@dataclass
class PPOConfig:
    lr: float = field(default=1e-5, metadata=help_text("AdamW learning rate (constant)."))
    value_lr: float | None = field(
        default=None,
        metadata=help_text(
            "PPO: learning rate of the value head (and value adapter); default: lr. A "
            "critic that starts from zero often needs a larger one."
        ),
    )
    weight_decay: float = field(default=0.0, metadata=help_text("AdamW weight decay."))
    epochs: int = field(
        default=2, metadata=help_text("Passes over each batch of rollouts (PPO epochs).")
    )
    minibatch_size: int = field(default=32, metadata=help_text("Rollouts per optimiser step."))
    micro_batch_size: int = field(
        default=8,
        metadata=help_text(
            "Rollouts per forward pass; a minibatch is accumulated from these (the loss "
            "is the same token mean whatever the split)."
        ),
    )
    max_length: int = field(
        default=1024,
        metadata=help_text("Tokens per prompt + completion; the prompt's start is cut first."),
    )
    max_grad_norm: float = field(default=1.0, metadata=help_text("Gradient clipping norm."))
    clip: float = field(
        default=0.2, metadata=help_text("ε of the clipped surrogate: ratios kept in 1 ± ε.")
    )
    value_clip: float = field(
        default=0.2,
        metadata=help_text("PPO: how far a value may move from its rollout-time estimate."),
    )
    vf_coef: float = field(default=0.1, metadata=help_text("PPO: weight of the value loss."))
    gamma: float = field(default=1.0, metadata=help_text("PPO: discount per token."))
    lam: float = field(default=0.95, metadata=help_text("PPO: GAE's λ."))
    whiten_advantages: bool = field(
        default=True,
        metadata=help_text(
            "PPO and RLOO: whiten the advantages over the batch (GRPO scales per group)."
        ),
    )
    scale_group_rewards: bool = field(
        default=True,
        metadata=help_text(
            "GRPO: divide by the group's standard deviation (false: Dr. GRPO's unscaled baseline)."
        ),
    )
    kl_coef: float = field(
        default=0.05,
        metadata=help_text("β of the KL penalty against the reference (adaptive: its start)."),
    )
    kl_estimator: Literal["auto", "k1", "k2", "k3"] = field(
        default="auto",
        metadata=help_text(
            "Per-token KL estimator: k1 = log π/π_ref, k2 = ½(log π/π_ref)², k3 = "
            "π_ref/π - 1 - log π_ref/π; auto: k1 in the reward, k3 in the loss."
        ),
    )
    kl_penalty: Literal["auto", "reward", "loss"] = field(
        default="auto",
        metadata=help_text(
            "Where the KL penalty goes: subtracted from the per-token reward (PPO, RLOO) or "
            "added to the loss (GRPO); auto picks the method's usual place."
        ),
    )
    kl_target: float = field(
        default=0.0,
        metadata=help_text(
            "Adaptive KL controller (Ziegler et al.): the KL per sequence, in nats, that β "
            "is steered towards after each batch; 0 keeps β fixed."
        ),
    )
    kl_horizon: float = field(
        default=10_000, metadata=help_text("Adaptive KL: samples over which β moves ~20%.")
    )
    value_model: Literal["shared", "adapter"] = field(
        default="shared",
        metadata=help_text(
            "PPO's critic: a linear head on the policy's hidden states (shared: no extra "
            "forward), or on a second LoRA adapter of the same base (separate trunk)."
        ),
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=help_text("Recompute activations in the backward pass: less memory, slower."),
    )
    seed: int = field(default=0, metadata=help_text("Shuffling and initialisation seed."))

    def __post_init__(self) -> None:
        if self.lr <= 0 or (self.value_lr or 1) <= 0 or self.clip <= 0 or self.value_clip <= 0:
            raise ValueError("lr, clip and value_clip must be positive")
        if self.epochs < 1 or self.minibatch_size < 1 or self.micro_batch_size < 1:
            raise ValueError("epochs, minibatch_size and micro_batch_size must be >= 1")
        if self.max_length < 2:
            raise ValueError("max_length must be >= 2")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError("gamma and lam must be in [0, 1]")
        if self.kl_coef < 0 or self.kl_target < 0 or self.kl_horizon <= 0:
            raise ValueError("kl_coef and kl_target must be >= 0, kl_horizon positive")

    def penalty_place(self, method: str) -> str:
        if self.kl_penalty != "auto":
            return self.kl_penalty
        return "loss" if method == "grpo" else "reward"

    def estimator(self, method: str) -> str:
        if self.kl_estimator != "auto":
            return self.kl_estimator
        return "k3" if self.penalty_place(method) == "loss" else "k1"


@dataclass(frozen=True)
class Rollout:
    """One sampled completion, its score and the prompt (group) it answers."""

    sequence: TokenSequence
    reward: float
    group: str


def encode_rollouts(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int
) -> list[Rollout]:
    """Rollouts from records with ``reward`` and the sampler's token ids (or, failing
    those, ``prompt``/``completion`` text, tokenized separately)."""
    out = []
    for i, r in enumerate(records):
        where = f"rollout {i} (task {r.get('task_id', '?')})"
        if "reward" not in r:
            raise InputError(f"{where}: no reward")
        ids = {}
        for side in ("prompt", "completion"):
            if f"{side}_ids" in r:
                ids[side] = [int(t) for t in r[f"{side}_ids"]]
            elif side in r:
                ids[side] = tokenizer(r[side], add_special_tokens=False)["input_ids"]
            else:
                raise InputError(f"{where}: neither {side}_ids nor {side}")
        seq = make_sequence(ids["prompt"], ids["completion"], where).clipped(max_length)
        out.append(Rollout(seq, float(r["reward"]), str(r.get("task_id", i))))
    return out


def _tail(rows: Sequence[torch.Tensor], tail: int, device: torch.device) -> torch.Tensor:
    """Per-rollout 1-D tensors laid out as a batch's last ``tail`` columns (left padded)."""
    out = torch.zeros(len(rows), tail, dtype=torch.float32)
    for i, row in enumerate(rows):
        if len(row):
            out[i, tail - len(row) :] = row
    return out.to(device)


@dataclass(frozen=True)
class _Rows:
    """Some rollouts' per-token tensors as the last columns of their batch."""

    index: Sequence[int]
    tail: int
    device: torch.device

    def __call__(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        return _tail([rows[i] for i in self.index], self.tail, self.device)


def _cut(batch_values: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """The inverse of ``_tail``: each row's last ``length`` values, on the CPU."""
    rows = batch_values.detach().float().cpu()
    return [rows[i, rows.shape[1] - n :].clone() for i, n in enumerate(lengths)]


def _activate(model: Any, adapter: str, trainable: Sequence[torch.nn.Parameter]) -> None:
    """Route the forward through ``adapter``; peft's switch freezes the other adapters,
    which stay trained here."""
    model.base_model.set_adapter(adapter)
    for p in trainable:
        p.requires_grad_(True)


def _no_dropout(model: Any) -> None:
    """Dropout off: the ratio π/π_old must be 1 before the first update, and the
    rollout policy sampled without it."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _load_state(adapter: str | None) -> dict[str, Any]:
    path = Path(adapter) / STATE_FILE if adapter else None
    return json.loads(path.read_text("utf-8")) if path and path.exists() else {}


def train_ppo(
    records: Sequence[dict[str, Any]],
    model_config: ModelConfig,
    config: PPOConfig,
    out: str | Path,
    *,
    method: str = "ppo",
    temperature: float = 1.0,
    reference: str | Path = "base",
    progress: bool = True,
) -> dict[str, Any]:
    """One batch of RL updates on ``model_config``'s policy (its adapter, or fresh LoRA)
    from ``records`` (rollouts sampled from that policy at ``temperature``); saves the
    new adapter, with the value head and the KL coefficient, to ``out``.

    ``reference``: "base" (adapters off) or the path of a saved adapter, kept frozen.
    """
    from safetensors.torch import load_file, save_file

    from codealign.models.loading import add_lora, load_model, load_tokenizer, model_path

    if method not in RL_METHODS:
        raise ValueError(f"method must be one of {', '.join(RL_METHODS)}, got {method!r}")
    if str(reference) == "start":
        raise ValueError("the reference must be frozen: 'base' or a saved adapter")
    if temperature <= 0:
        raise InputError("RL needs sampled rollouts: sampling.temperature must be > 0")
    started = time.perf_counter()
    out = Path(out)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(
        model_path(model_config), trust_remote_code=model_config.trust_remote_code
    )
    rollouts = encode_rollouts(records, tokenizer, config.max_length)
    if not rollouts:
        raise InputError("no rollouts to train on")
    # An adaptive β continues where the previous round's controller left it.
    state = _load_state(model_config.adapter) if config.kl_target > 0 else {}
    kl_coef = float(state.get("kl_coef", config.kl_coef))
    place, estimator = config.penalty_place(method), config.estimator(method)
    uses_critic = method == "ppo"

    # -- one base model: the policy adapter, the reference, the critic ------------------
    model = load_model(model_config, for_training=True)
    if not model_config.adapter:
        model = add_lora(model, model_config)
    _no_dropout(model)
    hidden_size = model.get_base_model().config.get_text_config().hidden_size
    device = next(model.parameters()).device
    value_head = torch.nn.Linear(hidden_size, 1).to(device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    separate_critic = uses_critic and config.value_model == "adapter"
    if uses_critic and model_config.adapter:
        head_file = Path(model_config.adapter) / VALUE_HEAD_FILE
        if head_file.exists():
            value_head.load_state_dict(load_file(str(head_file)))
    if separate_critic:
        saved = Path(model_config.adapter or "", VALUE_ADAPTER)
        if model_config.adapter and (saved / "adapter_config.json").exists():
            model.load_adapter(str(saved), adapter_name=VALUE_ADAPTER, is_trainable=True)
        else:
            model.add_adapter(VALUE_ADAPTER, model.peft_config["default"])
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    critic_params = list(value_head.parameters()) if uses_critic else []
    if separate_critic:
        critic_params += [p for n, p in model.named_parameters() if f".{VALUE_ADAPTER}." in n]
    policy_params = [p for p in lora if all(p is not q for q in critic_params)]
    trainable = policy_params + critic_params

    def values_of(batch: Any, policy_hidden: torch.Tensor) -> torch.Tensor:
        if not separate_critic:
            shared: torch.Tensor = value_head(policy_hidden.float()).squeeze(-1)
            return shared
        _activate(model, VALUE_ADAPTER, lora)
        hidden = completion_hidden(model, batch)
        _activate(model, "default", lora)
        values: torch.Tensor = value_head(hidden.float()).squeeze(-1)
        return values

    # -- 1. the rollout pass: log-probs, reference log-probs, values, entropy ----------
    training_started = time.perf_counter()
    n = len(rollouts)
    lengths = [len(r.sequence.completion_ids) for r in rollouts]
    old_logps: list[torch.Tensor] = []
    ref_logps: list[torch.Tensor] = []
    old_values: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    step = config.micro_batch_size
    with torch.no_grad():
        for s in tqdm(
            range(0, n, step),
            desc="rollout log-probs",
            unit="batch",
            disable=not progress,
            dynamic_ncols=True,
        ):
            chunk, sizes = rollouts[s : s + step], lengths[s : s + step]
            batch = collate([r.sequence for r in chunk], pad_id, config.max_length).to(device)
            policy = completion_outputs(model, batch, temperature=temperature, entropy=True)
            assert policy.entropy is not None
            old_logps += _cut(policy.logps, sizes)
            entropies += _cut(policy.entropy, sizes)
            if uses_critic:
                old_values += _cut(values_of(batch, policy.hidden), sizes)
            with reference_weights(model, reference):
                ref = completion_outputs(model, batch, temperature=temperature)
            ref_logps += _cut(ref.logps, sizes)
    _activate(model, "default", lora)  # the reference switch may have frozen the policy

    # -- 2. rewards and 3. advantages -------------------------------------------------
    scores = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)
    group_ids = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rollouts))}
    groups = torch.tensor([group_ids[r.group] for r in rollouts])
    kls = [kl_estimate(o, f, estimator) for o, f in zip(old_logps, ref_logps, strict=True)]
    kl_k1 = torch.tensor([float((o - f).sum()) for o, f in zip(old_logps, ref_logps, strict=True)])
    advantages: list[torch.Tensor]
    returns: list[torch.Tensor] = []
    if uses_critic:
        width = max(max(lengths), 1)
        mask = _tail([torch.ones(k) for k in lengths], width, torch.device("cpu"))
        token_rewards = _tail(
            [-kl_coef * k if place == "reward" else torch.zeros_like(k) for k in kls],
            width,
            torch.device("cpu"),
        )
        token_rewards[:, -1] += scores * (mask[:, -1] > 0)  # the score lands on the last token
        values = _tail(old_values, width, torch.device("cpu"))
        adv, ret = gae(token_rewards, values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            adv = whiten(adv, mask)
        advantages, returns = _cut(adv, lengths), _cut(ret, lengths)
        batch_explained = explained_variance(values, ret, mask)
    else:
        sequence_rewards = scores.clone()
        if place == "reward":
            sequence_rewards -= kl_coef * torch.stack([k.sum() for k in kls])
        per_sample = group_advantages(
            sequence_rewards, groups, method, scale=config.scale_group_rewards
        )
        if method == "rloo" and config.whiten_advantages and n > 1:
            per_sample = whiten(per_sample, torch.ones_like(per_sample))
        advantages = [torch.full((k,), float(a)) for k, a in zip(lengths, per_sample, strict=True)]
        batch_explained = float("nan")
    rollout_stats = {
        "reward_mean": float(scores.mean()),
        "reward_std": float(scores.std()) if n > 1 else 0.0,
        "kl": float(kl_k1.mean()),  # per sequence, rollout policy vs reference (nats)
        "kl_coef": kl_coef,
        "entropy": float(torch.cat(entropies).mean()) if sum(lengths) else 0.0,
        "response_length": sum(lengths) / n,
        "zero_variance_groups": zero_variance_fraction(scores, groups),
    }
    if uses_critic:
        rollout_stats["explained_variance_rollout"] = batch_explained

    # -- 4. clipped updates over minibatches ------------------------------------------
    param_groups: list[dict[str, Any]] = [{"params": policy_params, "lr": config.lr}]
    if critic_params:
        param_groups.append({"params": critic_params, "lr": config.value_lr or config.lr})
    optimizer = torch.optim.AdamW(param_groups, weight_decay=config.weight_decay)
    usable = [i for i in range(n) if lengths[i] > 0]  # an empty completion has no actions
    minibatches_per_epoch = math.ceil(len(usable) / config.minibatch_size)
    log: list[dict[str, float]] = []
    bar = tqdm(
        total=config.epochs * minibatches_per_epoch,
        desc=method,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(config.epochs):
            order = list(usable)
            random.Random(config.seed * 7919 + epoch).shuffle(order)
            for m in range(0, len(order), config.minibatch_size):
                minibatch = order[m : m + config.minibatch_size]
                tokens = sum(lengths[i] for i in minibatch)
                sums: dict[str, float] = {}
                critic: list[tuple[torch.Tensor, torch.Tensor]] = []  # (values, returns)
                for s in range(0, len(minibatch), config.micro_batch_size):
                    micro = minibatch[s : s + config.micro_batch_size]
                    seqs = [rollouts[i].sequence for i in micro]
                    batch = collate(seqs, pad_id, config.max_length).to(device)
                    mask = batch.label_mask.to(device).float()
                    weight = float(mask.sum()) / tokens  # token mean over the minibatch
                    at = _Rows(micro, batch.tail, device)
                    policy = completion_outputs(model, batch, temperature=temperature, entropy=True)
                    pg_loss, clip_fraction, approx_kl = clipped_policy_loss(
                        policy.logps, at(old_logps), at(advantages), mask, config.clip
                    )
                    loss = pg_loss
                    parts = {
                        "policy_loss": pg_loss.item(),
                        "clip_fraction": clip_fraction.item(),
                        "approx_kl": approx_kl.item(),
                    }
                    assert policy.entropy is not None
                    parts["entropy_now"] = float(masked_mean(policy.entropy, mask))
                    if uses_critic:
                        values_now = values_of(batch, policy.hidden)
                        v_loss, v_clip = clipped_value_loss(
                            values_now, at(old_values), at(returns), mask, config.value_clip
                        )
                        loss = loss + config.vf_coef * v_loss
                        parts["value_loss"] = v_loss.item()
                        parts["value_clip_fraction"] = v_clip.item()
                        on = mask.bool()
                        critic.append((values_now.detach()[on].cpu(), at(returns)[on].cpu()))
                    if place == "loss" and kl_coef > 0:
                        kl_now = masked_mean(
                            kl_estimate(policy.logps, at(ref_logps), estimator), mask
                        )
                        loss = loss + kl_coef * kl_now
                        parts["kl_loss"] = kl_now.item()
                    (loss * weight).backward()  # type: ignore[no-untyped-call]
                    for key, value in parts.items():
                        sums[key] = sums.get(key, 0.0) + value * weight
                if critic:
                    v, ret = (torch.cat(x) for x in zip(*critic, strict=True))
                    sums["explained_variance"] = explained_variance(v, ret, torch.ones_like(v))
                norm = torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                row = {**rollout_stats, **sums}
                row.update(step=len(log) + 1, epoch=epoch, grad_norm=float(norm))
                log.append(row)
                bar.update()
                bar.set_postfix(
                    reward=f"{rollout_stats['reward_mean']:.3f}",
                    clip=f"{sums['clip_fraction']:.2f}",
                    kl=f"{sums['approx_kl']:.4f}",
                )

    # -- 5. the KL coefficient, and saving --------------------------------------------
    next_coef = kl_coef
    if config.kl_target > 0:
        next_coef = adaptive_kl_coef(
            kl_coef, rollout_stats["kl"], config.kl_target, config.kl_horizon, n
        )
    metrics: dict[str, Any] = {
        "method": method,
        "rollouts": n,
        "trained_rollouts": len(usable),
        "steps": len(log),
        "seconds": round(time.perf_counter() - started, 2),
        "training_seconds": round(time.perf_counter() - training_started, 3),
        **rollout_stats,
        "kl_coef_next": next_coef,
        "kl_penalty": place,
        "kl_estimator": estimator,
        "reference": str(reference),
        "config": asdict(config),
    }
    for key in (
        "policy_loss",
        "value_loss",
        "explained_variance",
        "clip_fraction",
        "approx_kl",
        "entropy_now",
    ):
        if log and key in log[0]:
            metrics[f"{key}_first"] = log[0][key]
            metrics[f"{key}_last"] = mean_of(log[-max(1, len(log) // 4) :], key)

    def extra(folder: Path) -> None:
        from codealign.jsonl import write_json

        write_json(folder / STATE_FILE, {"kl_coef": next_coef, "method": method})
        if uses_critic:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()},
                str(folder / VALUE_HEAD_FILE),
            )
        if separate_critic:  # peft writes a named adapter to its own subfolder
            model.save_pretrained(str(folder), selected_adapters=[VALUE_ADAPTER])

    save_adapter(model, out, metrics, log, extra)
    return metrics
