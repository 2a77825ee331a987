"""The typed records of the RL recipe, after torchtune's ``rlhf/_types.py``.

``Trajectory`` is what the rollout pass collects about a batch of rollouts, ``Rewards``
and ``Advantages`` what the next two phases make of it, ``RolloutStats`` and ``PPOStats``
what the step log reports. Per-rollout tensors are 1-D, one value per completion token;
``pad_tail`` lays them out as the last columns of a left-padded batch (where a
``sequences.Batch`` has its completions) and ``cut_tail`` takes them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from codealign.training.sequences import TokenSequence


@dataclass(frozen=True)
class Rollout:
    """One sampled completion, its score and the prompt (group) it answers."""

    sequence: TokenSequence
    reward: float
    group: str


@dataclass(frozen=True)
class Trajectory:
    """The rollout pass's findings, one entry per rollout, in the rollouts' order.

    The log-probs, values and entropies are those of the policy that sampled the
    rollouts, taken once before any update: the fixed point the clipped objective and
    the KL penalty measure from.
    """

    rollouts: Sequence[Rollout]
    old_logps: list[torch.Tensor]  # log π_old(token), per completion token
    ref_logps: list[torch.Tensor]  # log π_ref(token)
    values: list[torch.Tensor]  # the critic's V(state); empty without a critic
    entropies: list[torch.Tensor]  # of π_old at each token
    lengths: list[int]  # completion tokens per rollout
    scores: torch.Tensor  # [n] float32: each rollout's score
    groups: torch.Tensor  # [n]: the index of each rollout's prompt

    def __len__(self) -> int:
        return len(self.rollouts)

    def usable(self) -> list[int]:
        """The rollouts with at least one completion token: an empty one has no actions."""
        return [i for i, n in enumerate(self.lengths) if n > 0]


@dataclass(frozen=True)
class Rewards:
    """The rewards phase's output: the same signal per token (for GAE) and per sequence
    (for the group baselines)."""

    token: torch.Tensor  # [n, width]: -β·KL per token (penalty in the reward), + score at the end
    mask: torch.Tensor  # [n, width]: 1 on completion tokens
    sequence: torch.Tensor  # [n]: the score, less β·Σ KL when the penalty is in the reward
    kl: torch.Tensor  # [n]: Σ log π_old/π_ref per rollout (k1, nats), for the log


@dataclass(frozen=True)
class Advantages:
    """An advantage estimator's output, per rollout and token."""

    advantages: list[torch.Tensor]
    returns: list[torch.Tensor]  # the critic's targets; empty without a critic
    explained_variance: float | None  # of the rollout-time values; None without a critic


class RolloutStats(NamedTuple):
    """What the batch of rollouts was like: repeated on every step-log row."""

    reward_mean: float
    reward_std: float
    kl: float  # per sequence, rollout policy vs reference (nats)
    kl_coef: float
    entropy: float
    response_length: float
    zero_variance_groups: float
    explained_variance_rollout: float | None = None  # PPO only

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self._asdict().items() if v is not None}


class PPOStats(NamedTuple):
    """One micro-batch's losses and diagnostics; a minibatch logs their token-weighted
    sum. The optional ones exist only where their term does (critic, KL in the loss)."""

    policy_loss: float
    clip_fraction: float
    approx_kl: float
    entropy_now: float
    value_loss: float | None = None
    value_clip_fraction: float | None = None
    kl_loss: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in self._asdict().items() if v is not None}


def pad_tail(rows: Sequence[torch.Tensor], tail: int, device: torch.device) -> torch.Tensor:
    """Per-rollout 1-D tensors laid out as a batch's last ``tail`` columns (left padded)."""
    out = torch.zeros(len(rows), tail, dtype=torch.float32)
    for i, row in enumerate(rows):
        if len(row):
            out[i, tail - len(row) :] = row
    return out.to(device)


def cut_tail(batch_values: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """The inverse of ``pad_tail``: each row's last ``length`` values, on the CPU."""
    rows = batch_values.detach().float().cpu()
    return [rows[i, rows.shape[1] - n :].clone() for i, n in enumerate(lengths)]
