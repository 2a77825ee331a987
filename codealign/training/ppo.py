"""Online RL on a LoRA/QLoRA policy: PPO with a value head, and GRPO and RLOO.

``train_ppo`` runs the recipe over one batch of rollouts (sampled completions, their
token ids and their scores) in five phases, each a function of its own:

1. ``collect_trajectory``: one no-grad pass for the rollout policy's token log-probs and
   entropies, the reference's log-probs and (PPO) the value of every state;
2. ``compute_rewards``: the score at the last token, a KL penalty against the reference;
3. the advantages, from the estimator the method names (``advantages``): GAE on the value
   head's estimates (PPO), or the other samples of the same prompt as the baseline
   (GRPO: group mean and standard deviation; RLOO: leave one out);
4. ``update_policy``: epochs of clipped updates over shuffled minibatches;
5. ``save_policy``: the adapter, with the value head and the KL coefficient adapted
   towards its target (optional), so that the next round continues from them.

One base model serves every role (``actor_critic``): the policy is the ``default`` LoRA
adapter, the reference is the same base with the adapters switched off (or a frozen
saved adapter), and the value head reads the policy's hidden states (or those of a
second LoRA adapter, ``value``). The records passed between the phases are typed
(``trajectory``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from codealign import tracking
from codealign.errors import InputError
from codealign.settings.methods import RL_METHODS, method_spec
from codealign.settings.model import ModelConfig
from codealign.settings.ppo import PPOConfig
from codealign.training import distributed, fsdp
from codealign.training.actor_critic import (
    VALUE_ADAPTER,
    VALUE_HEAD_FILE,
    ActorCritic,
    load_actor_critic,
)
from codealign.training.adapters import (
    load_policy_tokenizer,
    pad_id_of,
    reference_weights,
    save_adapter,
)
from codealign.training.advantages import advantage_estimator, compute_rewards
from codealign.training.distributed import Ranks
from codealign.training.losses import (
    adaptive_kl_coef,
    clipped_policy_loss,
    clipped_value_loss,
    explained_variance,
    kl_estimate,
    masked_mean,
    zero_variance_fraction,
)
from codealign.training.sequences import collate, completion_outputs, make_sequence
from codealign.training.steps import (
    StepLog,
    batch_progress,
    batched,
    epoch_order,
    last_quarter,
    mean_of,
    optimizer_step,
    step_bar,
)
from codealign.training.trajectory import (
    Advantages,
    PPOStats,
    Rewards,
    Rollout,
    RolloutStats,
    Trajectory,
    cut_tail,
    pad_tail,
)

STATE_FILE = "rl_state.json"


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


@dataclass(frozen=True)
class RLSetup:
    """The settings of one call that are not ``PPOConfig`` fields, resolved once."""

    method: str
    temperature: float
    reference: str | Path
    kl_coef: float  # β now: the config's, or where the last round's controller left it
    penalty_place: str  # "reward" or "loss"
    kl_estimator: str  # k1, k2 or k3


# -- 1. collect -----------------------------------------------------------------------------


#: One micro-batch's per-rollout (old log-probs, entropies, values, reference log-probs).
_Passes = tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]


def _trajectory_pass(
    ac: ActorCritic,
    chunk: Sequence[Rollout],
    sizes: Sequence[int],
    setup: RLSetup,
    config: PPOConfig,
) -> _Passes:
    """Phase 1 on one micro-batch, each rollout's values on the CPU."""
    batch = collate([r.sequence for r in chunk], ac.pad_id, config.max_length).to(ac.device)
    policy = completion_outputs(ac.model, batch, temperature=setup.temperature, entropy=True)
    assert policy.entropy is not None
    values = cut_tail(ac.values(batch, policy.hidden), sizes) if ac.uses_critic else []
    with reference_weights(ac.model, setup.reference):
        ref = completion_outputs(ac.model, batch, temperature=setup.temperature)
    return (
        cut_tail(policy.logps, sizes),
        cut_tail(policy.entropy, sizes),
        values,
        cut_tail(ref.logps, sizes),
    )


def collect_trajectory(
    ac: ActorCritic,
    rollouts: Sequence[Rollout],
    setup: RLSetup,
    config: PPOConfig,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> Trajectory:
    """Phase 1: the rollout policy's log-probs and entropies, the reference's log-probs
    and (PPO) the values, in one no-grad pass over micro-batches.

    Data parallel, each process takes every world-th micro-batch and the results are
    gathered to all of them (under FSDP a process short of one repeats a pass it then
    drops: every process must run the same forwards)."""
    ranks = ranks or Ranks()
    lengths = [len(r.sequence.completion_ids) for r in rollouts]
    starts = range(0, len(rollouts), config.micro_batch_size)
    mine = starts[ranks.rank :: ranks.world]
    passes = math.ceil(len(starts) / ranks.world) if ranks.sharded else len(mine)
    done: dict[int, _Passes] = {}
    with torch.no_grad():
        for i in batch_progress(range(passes), "rollout log-probs", progress):
            start = mine[i] if i < len(mine) else starts[0]
            chunk = rollouts[start : start + config.micro_batch_size]
            sizes = lengths[start : start + len(chunk)]
            outputs = _trajectory_pass(ac, chunk, sizes, setup, config)
            if i < len(mine):
                done[start] = outputs
    for part in ranks.gather(done):
        done.update(part)
    old_logps: list[torch.Tensor] = []
    ref_logps: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    entropies: list[torch.Tensor] = []
    for start in starts:
        old, ent, value, ref = done[start]
        old_logps += old
        entropies += ent
        values += value
        ref_logps += ref
    ac.route_to_policy()  # the reference switch may have frozen the policy
    group_ids = {g: i for i, g in enumerate(dict.fromkeys(r.group for r in rollouts))}
    return Trajectory(
        rollouts=rollouts,
        old_logps=old_logps,
        ref_logps=ref_logps,
        values=values,
        entropies=entropies,
        lengths=lengths,
        scores=torch.tensor([r.reward for r in rollouts], dtype=torch.float32),
        groups=torch.tensor([group_ids[r.group] for r in rollouts]),
    )


def rollout_stats(
    trajectory: Trajectory, rewards: Rewards, advantages: Advantages, kl_coef: float
) -> RolloutStats:
    """What the batch of rollouts was like, before any update."""
    n, lengths, scores = len(trajectory), trajectory.lengths, trajectory.scores
    return RolloutStats(
        reward_mean=float(scores.mean()),
        reward_std=float(scores.std()) if n > 1 else 0.0,
        kl=float(rewards.kl.mean()),
        kl_coef=kl_coef,
        entropy=float(torch.cat(trajectory.entropies).mean()) if sum(lengths) else 0.0,
        response_length=sum(lengths) / n,
        zero_variance_groups=zero_variance_fraction(scores, trajectory.groups),
        explained_variance_rollout=advantages.explained_variance,
    )


# -- 4. update ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """Some rollouts' per-token tensors as the last columns of their batch."""

    index: Sequence[int]
    tail: int
    device: torch.device

    def __call__(self, rows: Sequence[torch.Tensor]) -> torch.Tensor:
        return pad_tail([rows[i] for i in self.index], self.tail, self.device)


@dataclass(frozen=True)
class _Batch:
    """What the update phase reads: the trajectory and its advantages."""

    trajectory: Trajectory
    advantages: Advantages


def _micro_batch(
    ac: ActorCritic,
    data: _Batch,
    micro: Sequence[int],
    tokens: float,
    setup: RLSetup,
    config: PPOConfig,
) -> tuple[PPOStats, float, tuple[torch.Tensor, torch.Tensor] | None]:
    """Backward one micro-batch's loss, weighted by its share of the minibatch's tokens
    (so the step is a token mean whatever the split). Returns its stats, that weight,
    and (PPO) its (values, returns) on completion tokens."""
    trajectory, adv = data.trajectory, data.advantages
    seqs = [trajectory.rollouts[i].sequence for i in micro]
    batch = collate(seqs, ac.pad_id, config.max_length).to(ac.device)
    mask = batch.label_mask.to(ac.device).float()
    weight = float(mask.sum()) / tokens
    at = _Rows(micro, batch.tail, ac.device)
    policy = completion_outputs(ac.model, batch, temperature=setup.temperature, entropy=True)
    pg_loss, clip_fraction, approx_kl = clipped_policy_loss(
        policy.logps, at(trajectory.old_logps), at(adv.advantages), mask, config.clip
    )
    loss = pg_loss
    assert policy.entropy is not None
    entropy_now = float(masked_mean(policy.entropy, mask))
    value_loss = value_clip = kl_loss = None
    critic = None
    if ac.uses_critic:
        values_now = ac.values(batch, policy.hidden)
        v_loss, v_clip = clipped_value_loss(
            values_now, at(trajectory.values), at(adv.returns), mask, config.value_clip
        )
        loss = loss + config.vf_coef * v_loss
        value_loss, value_clip = v_loss.item(), v_clip.item()
        on = mask.bool()
        critic = (values_now.detach()[on].cpu(), at(adv.returns)[on].cpu())
    if setup.penalty_place == "loss" and setup.kl_coef > 0:
        kl_now = masked_mean(
            kl_estimate(policy.logps, at(trajectory.ref_logps), setup.kl_estimator), mask
        )
        loss = loss + setup.kl_coef * kl_now
        kl_loss = kl_now.item()
    (loss * weight).backward()  # type: ignore[no-untyped-call]
    stats = PPOStats(
        pg_loss.item(),
        clip_fraction.item(),
        approx_kl.item(),
        entropy_now,
        value_loss,
        value_clip,
        kl_loss,
    )
    return stats, weight, critic


def _minibatch(
    ac: ActorCritic,
    data: _Batch,
    minibatch: Sequence[int],
    setup: RLSetup,
    config: PPOConfig,
    tokens: float | None = None,
    passes: int = 0,
) -> StepLog:
    """Accumulate one minibatch's gradient over micro-batches; its token-weighted stats
    (and the critic's explained variance on it). ``tokens``, the count each micro-batch's
    share is taken of, defaults to the minibatch's own. ``passes``: at least that many
    micro-batches, the missing ones zero-weight (under FSDP every process must run the
    same forwards)."""
    if tokens is None:
        tokens = sum(data.trajectory.lengths[i] for i in minibatch)
    micros = batched(minibatch, config.micro_batch_size)
    for _ in range(passes - len(micros)):
        _micro_batch(ac, data, minibatch[:1], math.inf, setup, config)
    sums: StepLog = {}
    critic: list[tuple[torch.Tensor, torch.Tensor]] = []
    for micro in micros:
        stats, weight, values_and_returns = _micro_batch(ac, data, micro, tokens, setup, config)
        for key, value in stats.as_dict().items():
            sums[key] = sums.get(key, 0.0) + value * weight
        if values_and_returns is not None:
            critic.append(values_and_returns)
    if critic:
        v, ret = (torch.cat(x) for x in zip(*critic, strict=True))
        sums["explained_variance"] = explained_variance(v, ret, torch.ones_like(v))
    return sums


def update_policy(
    ac: ActorCritic,
    trajectory: Trajectory,
    advantages: Advantages,
    stats: RolloutStats,
    setup: RLSetup,
    config: PPOConfig,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> list[StepLog]:
    """Phase 4: ``config.epochs`` seeded passes of clipped updates over minibatches of
    the rollouts that have actions; one step-log row per optimiser step.

    Data parallel, a minibatch is ``minibatch_size`` rollouts per process: each takes
    its shard, its micro-batches weighted by their tokens' share of the whole minibatch
    times the number of processes, and the gradients are averaged over the processes."""
    ranks = ranks or Ranks()
    optimizer = ac.optimizer(config)
    usable = trajectory.usable()
    data = _Batch(trajectory, advantages)
    global_minibatch = config.minibatch_size * ranks.world
    per_epoch = math.ceil(len(usable) / global_minibatch)
    log: list[StepLog] = []
    with step_bar(config.epochs * per_epoch, setup.method, progress) as bar:
        for epoch in range(config.epochs):
            order = epoch_order(usable, config.seed, epoch)
            for minibatch in batched(order, global_minibatch):
                mine = ranks.shard(minibatch)
                # An empty shard runs one rollout with weight 0 (infinite token count).
                tokens = sum(trajectory.lengths[i] for i in minibatch) / ranks.world
                # Sharded, every process runs as many micro-batches as the largest shard.
                largest = math.ceil(len(minibatch) / ranks.world)
                passes = math.ceil(largest / config.micro_batch_size) if ranks.sharded else 0
                sums = _minibatch(
                    ac, data, mine or minibatch[:1], setup, config,
                    tokens if mine else math.inf, passes,
                )  # fmt: skip
                ranks.average_gradients(ac.trainable)
                sums = ranks.mean(sums)
                grad_norm = optimizer_step(optimizer, ac.trainable, config.max_grad_norm)
                row = {**stats.as_dict(), **sums}
                row.update(step=len(log) + 1, epoch=epoch, grad_norm=grad_norm)
                log.append(row)
                tracking.log_step(row)
                bar.update()
                bar.set_postfix(
                    reward=f"{stats.reward_mean:.3f}",
                    clip=f"{sums['clip_fraction']:.2f}",
                    kl=f"{sums['approx_kl']:.4f}",
                )
    return log


# -- 5. save --------------------------------------------------------------------------------


def summarise(
    trajectory: Trajectory,
    stats: RolloutStats,
    log: Sequence[StepLog],
    next_coef: float,
    setup: RLSetup,
    config: PPOConfig,
    started: float,
    training_started: float,
) -> dict[str, Any]:
    """The run's metrics: the rollouts, the first step against the last quarter, the
    next round's β, and the settings."""
    metrics: dict[str, Any] = {
        "method": setup.method,
        "rollouts": len(trajectory),
        "trained_rollouts": len(trajectory.usable()),
        "steps": len(log),
        "seconds": round(time.perf_counter() - started, 2),
        "training_seconds": round(time.perf_counter() - training_started, 3),
        **stats.as_dict(),
        "kl_coef_next": next_coef,
        "kl_penalty": setup.penalty_place,
        "kl_estimator": setup.kl_estimator,
        "reference": str(setup.reference),
        "config": asdict(config),
    }
    keys = ("policy_loss", "value_loss", "explained_variance", "clip_fraction", "approx_kl")
    for key in (*keys, "entropy_now"):
        if log and key in log[0]:
            metrics[f"{key}_first"] = log[0][key]
            metrics[f"{key}_last"] = mean_of(last_quarter(log), key)
    return metrics


def next_kl_coef(kl_coef: float, stats: RolloutStats, config: PPOConfig, n: int) -> float:
    """β for the next batch: the adaptive controller's step towards ``config.kl_target``
    after ``n`` rollouts, or β unchanged when no target is set."""
    if config.kl_target > 0:
        return adaptive_kl_coef(kl_coef, stats.kl, config.kl_target, config.kl_horizon, n)
    return kl_coef


def save_policy(
    ac: ActorCritic,
    out: Path,
    metrics: dict[str, Any],
    log: Sequence[StepLog],
    next_coef: float,
    method: str,
    gathered: dict[str, Any] | None = None,
) -> None:
    """Phase 5: the policy's adapter, with what the next round continues from: the KL
    coefficient and (PPO) the value head and value adapter."""
    from safetensors.torch import save_file

    from codealign.jsonl import write_json

    def extra(folder: Path) -> None:
        write_json(folder / STATE_FILE, {"kl_coef": next_coef, "method": method})
        if ac.uses_critic:
            state = ac.value_head.state_dict().items()
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in state},
                str(folder / VALUE_HEAD_FILE),
            )
        if ac.separate_critic:  # peft writes a named adapter to its own subfolder
            whole = {} if gathered is None else {"state_dict": gathered}
            ac.model.save_pretrained(str(folder), selected_adapters=[VALUE_ADAPTER], **whole)

    save_adapter(ac.model, out, metrics, log, extra, state=gathered)


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
    if method not in RL_METHODS:
        raise ValueError(f"method must be one of {', '.join(RL_METHODS)}, got {method!r}")
    if str(reference) == "start":
        raise ValueError("the reference must be frozen: 'base' or a saved adapter")
    if temperature <= 0:
        raise InputError("RL needs sampled rollouts: sampling.temperature must be > 0")
    started = time.perf_counter()
    ranks = distributed.current()  # one process, or those of accelerate launch
    model_config = ranks.model_config(model_config)
    progress = progress and ranks.main
    torch.manual_seed(config.seed)
    tokenizer = load_policy_tokenizer(model_config)
    rollouts = encode_rollouts(records, tokenizer, config.max_length)
    if not rollouts:
        raise InputError("no rollouts to train on")
    # An adaptive β continues where the previous round's controller left it.
    state = _load_state(model_config.adapter) if config.kl_target > 0 else {}
    kl_coef = float(state.get("kl_coef", config.kl_coef))
    setup = RLSetup(
        method,
        temperature,
        reference,
        kl_coef,
        config.penalty_place(method),
        config.estimator(method),
    )
    ac = load_actor_critic(model_config, config, method, pad_id_of(tokenizer), ranks, reference)
    training_started = time.perf_counter()
    # 1. what the rollout policy, the reference and the critic make of the rollouts
    trajectory = collect_trajectory(ac, rollouts, setup, config, progress, ranks)
    # 2. the scores, less the KL penalty where it goes into the reward
    rewards = compute_rewards(trajectory, kl_coef, setup.penalty_place, setup.kl_estimator)
    # 3. the advantages, by the method's estimator
    estimator = advantage_estimator(str(method_spec(method).estimator))
    advantages = estimator(trajectory, rewards, config)
    stats = rollout_stats(trajectory, rewards, advantages, kl_coef)
    # 4. clipped updates
    log = update_policy(ac, trajectory, advantages, stats, setup, config, progress, ranks)
    # 5. save, with the β the next round starts from (the main process; the others wait)
    next_coef = next_kl_coef(kl_coef, stats, config, len(trajectory))
    metrics = summarise(trajectory, stats, log, next_coef, setup, config, started, training_started)
    metrics.update(
        processes=ranks.world,
        per_device_minibatch=config.minibatch_size,
        effective_minibatch=config.minibatch_size * ranks.world,
        sharding="fsdp" if ranks.sharded else "none",
        weight_bytes_per_process=fsdp.local_parameter_bytes(ac.model),
    )
    gathered = fsdp.gathered_adapters(ac.model)  # sharded: every process takes part
    if ranks.main:
        save_policy(ac, Path(out), metrics, log, next_coef, method, gathered)
    ranks.wait()
    return metrics
