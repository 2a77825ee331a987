"""From a trajectory's scores to advantages: the rewards phase and the estimators.

The estimators are registered by name, as verl's ``core_algos`` does: ``gae`` bootstraps
from the value head's estimates (PPO); ``grpo`` and ``rloo`` take the other samples of the
same prompt as the baseline, with no critic. Each RL method names its estimator in its
``MethodSpec`` (``settings.methods``); a name registers once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from codealign.settings.ppo import PPOConfig
from codealign.training.losses import explained_variance, gae, group_advantages, kl_estimate, whiten
from codealign.training.trajectory import Advantages, Rewards, Trajectory, cut_tail, pad_tail

_CPU = torch.device("cpu")


def compute_rewards(trajectory: Trajectory, kl_coef: float, place: str, estimator: str) -> Rewards:
    """The score at each completion's last token and, when ``place`` is "reward", a KL
    penalty β·KL(π_old ‖ π_ref) per token (``estimator``: k1, k2 or k3), as a per-token
    signal and summed per sequence."""
    lengths = trajectory.lengths
    in_reward = place == "reward"
    pairs = list(zip(trajectory.old_logps, trajectory.ref_logps, strict=True))
    kls = [kl_estimate(o, f, estimator) for o, f in pairs]
    kl_k1 = torch.tensor([float((o - f).sum()) for o, f in pairs])
    width = max(max(lengths), 1)
    mask = pad_tail([torch.ones(k) for k in lengths], width, _CPU)
    token = pad_tail([-kl_coef * k if in_reward else torch.zeros_like(k) for k in kls], width, _CPU)
    token[:, -1] += trajectory.scores * (mask[:, -1] > 0)  # an empty completion has no last token
    sequence = trajectory.scores.clone()
    if in_reward:
        sequence -= kl_coef * torch.stack([k.sum() for k in kls])
    return Rewards(token, mask, sequence, kl_k1)


#: How one rollout batch's advantages are estimated.
AdvantageEstimator = Callable[[Trajectory, Rewards, PPOConfig], Advantages]


def gae_advantages(trajectory: Trajectory, rewards: Rewards, config: PPOConfig) -> Advantages:
    """GAE(γ, λ) on the per-token rewards and the rollout-time values, whitened over the
    batch when ``config.whiten_advantages``; the returns are the critic's targets."""
    values = pad_tail(trajectory.values, rewards.mask.shape[1], _CPU)
    adv, ret = gae(rewards.token, values, rewards.mask, config.gamma, config.lam)
    if config.whiten_advantages:
        adv = whiten(adv, rewards.mask)
    return Advantages(
        cut_tail(adv, trajectory.lengths),
        cut_tail(ret, trajectory.lengths),
        explained_variance(values, ret, rewards.mask),
    )


def _every_token(per_sample: torch.Tensor, lengths: Sequence[int]) -> Advantages:
    """A sequence-level advantage given to every token of its completion."""
    advantages = [torch.full((k,), float(a)) for k, a in zip(lengths, per_sample, strict=True)]
    return Advantages(advantages, [], None)


def grpo_advantages(trajectory: Trajectory, rewards: Rewards, config: PPOConfig) -> Advantages:
    """The sequence reward less its group's mean, over the group's standard deviation
    unless ``config.scale_group_rewards`` is off (Dr. GRPO)."""
    per_sample = group_advantages(
        rewards.sequence, trajectory.groups, "grpo", scale=config.scale_group_rewards
    )
    return _every_token(per_sample, trajectory.lengths)


def rloo_advantages(trajectory: Trajectory, rewards: Rewards, config: PPOConfig) -> Advantages:
    """The sequence reward less the mean of the group's other samples, whitened over the
    batch when ``config.whiten_advantages``."""
    per_sample = group_advantages(rewards.sequence, trajectory.groups, "rloo")
    if config.whiten_advantages and len(per_sample) > 1:
        per_sample = whiten(per_sample, torch.ones_like(per_sample))
    return _every_token(per_sample, trajectory.lengths)


#: Estimator name -> function (an RL method names its estimator in its ``MethodSpec``).
ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_estimator(name: str, fn: AdvantageEstimator) -> AdvantageEstimator:
    """Add ``fn`` as the estimator ``name``; a name already taken is an error, never an
    override (as verl's ``register_adv_est``)."""
    if name in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"advantage estimator {name!r} is already registered")
    ADVANTAGE_ESTIMATORS[name] = fn
    return fn


register_estimator("gae", gae_advantages)
register_estimator("grpo", grpo_advantages)
register_estimator("rloo", rloo_advantages)


def advantage_estimator(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name``."""
    if name not in ADVANTAGE_ESTIMATORS:
        known = ", ".join(ADVANTAGE_ESTIMATORS)
        raise ValueError(f"no advantage estimator {name!r}; known: {known}")
    return ADVANTAGE_ESTIMATORS[name]
