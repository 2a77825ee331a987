"""The RL recipe's rewards and advantage phases on a trajectory made by hand."""

from __future__ import annotations

import pytest
import torch

from codealign.settings.methods import RL_METHODS, method_spec
from codealign.settings.ppo import PPOConfig
from codealign.training.advantages import (
    ADVANTAGE_ESTIMATORS,
    advantage_estimator,
    compute_rewards,
    gae_advantages,
    register_estimator,
)
from codealign.training.sequences import TokenSequence
from codealign.training.trajectory import (
    PPOStats,
    Rollout,
    RolloutStats,
    Trajectory,
    cut_tail,
    pad_tail,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def trajectory() -> Trajectory:
    """Three rollouts: two of prompt a (2 tokens, 1 token), one of prompt b with an empty
    completion. The policy sits 0.5 nats above the reference on two tokens."""
    completions = [(7, 8), (9,), ()]
    scores, groups = [1.0, 0.0, 0.5], ["a", "a", "b"]
    rollouts = [
        Rollout(TokenSequence((5,), c), s, g)
        for c, s, g in zip(completions, scores, groups, strict=True)
    ]
    return Trajectory(
        rollouts=rollouts,
        old_logps=[t(-1.0, -2.0), t(-0.5), t()],
        ref_logps=[t(-1.5, -2.0), t(-1.0), t()],
        values=[t(0.0, 0.0), t(0.0), t()],
        entropies=[t(1.0, 2.0), t(3.0), t()],
        lengths=[2, 1, 0],
        scores=t(*scores),
        groups=torch.tensor([0, 0, 1]),
    )


def test_rewards_with_the_kl_penalty_in_the_reward() -> None:
    rewards = compute_rewards(trajectory(), kl_coef=0.1, place="reward", estimator="k1")
    assert rewards.mask.tolist() == [[1, 1], [0, 1], [0, 0]]
    # -β k1 on every token, and the score on the last one (the empty completion has none).
    assert torch.allclose(rewards.token, torch.tensor([[-0.05, 1.0], [0.0, -0.05], [0.0, 0.0]]))
    assert rewards.sequence.tolist() == pytest.approx([0.95, -0.05, 0.5])
    assert rewards.kl.tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_rewards_with_the_kl_penalty_in_the_loss() -> None:
    rewards = compute_rewards(trajectory(), kl_coef=0.1, place="loss", estimator="k3")
    assert rewards.token.tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert rewards.sequence.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert rewards.kl.tolist() == pytest.approx([0.5, 0.5, 0.0])  # always k1, for the log


def test_gae_advantages_by_hand() -> None:
    """γ = λ = 1 and zero values: the advantage of a token is the reward still to come."""
    traj = trajectory()
    rewards = compute_rewards(traj, kl_coef=0.1, place="reward", estimator="k1")
    config = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    out = advantage_estimator("gae")(traj, rewards, config)
    assert [a.tolist() for a in out.advantages] == [
        pytest.approx([0.95, 1.0]),
        pytest.approx([-0.05]),
        [],
    ]
    assert [r.tolist() for r in out.returns] == [a.tolist() for a in out.advantages]
    assert out.explained_variance == pytest.approx(0.0)  # a zero critic explains nothing


def test_group_advantages_by_hand() -> None:
    traj = trajectory()
    rewards = compute_rewards(traj, kl_coef=0.1, place="reward", estimator="k1")
    config = PPOConfig(whiten_advantages=False)
    # GRPO: group a's rewards 0.95 and -0.05, mean 0.45, std √0.5; group b has one sample.
    grpo = advantage_estimator("grpo")(traj, rewards, config)
    a = 0.5 / (0.5**0.5 + 1e-4)
    assert [x.tolist() for x in grpo.advantages] == [pytest.approx([a, a]), pytest.approx([-a]), []]
    assert grpo.returns == [] and grpo.explained_variance is None
    # RLOO: each minus the other sample of its group.
    rloo = advantage_estimator("rloo")(traj, rewards, config)
    assert [x.tolist() for x in rloo.advantages] == [
        pytest.approx([1.0, 1.0]),
        pytest.approx([-1.0]),
        [],
    ]


def test_the_estimator_registry() -> None:
    assert advantage_estimator("gae") is gae_advantages
    assert all(method_spec(m).estimator in ADVANTAGE_ESTIMATORS for m in RL_METHODS)
    assert method_spec("ppo").estimator == "gae"
    with pytest.raises(ValueError, match="'grpo' is already registered"):
        register_estimator("grpo", gae_advantages)
    assert advantage_estimator("grpo") is not gae_advantages  # the first one stays
    with pytest.raises(ValueError, match=r"no advantage estimator 'vtrace'; known: gae, grpo"):
        advantage_estimator("vtrace")


def test_typed_stats_log_only_what_exists() -> None:
    stats = PPOStats(policy_loss=0.1, clip_fraction=0.0, approx_kl=0.0, entropy_now=1.0)
    assert list(stats.as_dict()) == ["policy_loss", "clip_fraction", "approx_kl", "entropy_now"]
    rollout = RolloutStats(1.0, 0.0, 0.0, 0.05, 1.0, 3.0, 0.0)
    assert "explained_variance_rollout" not in rollout.as_dict()
    with_critic = rollout._replace(explained_variance_rollout=float("nan"))
    assert "explained_variance_rollout" in with_critic.as_dict()


def test_tail_layout_round_trips() -> None:
    rows = [t(1.0, 2.0), t(3.0), t()]
    padded = pad_tail(rows, 3, torch.device("cpu"))
    assert padded.tolist() == [[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]
    assert [r.tolist() for r in cut_tail(padded, [2, 1, 0])] == [[1.0, 2.0], [3.0], []]
