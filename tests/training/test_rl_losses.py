"""Policy-gradient maths (GAE, KL estimators, clipped objectives, controllers, group
baselines) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from codealign.training.losses import (
    adaptive_kl_coef,
    clipped_policy_loss,
    clipped_value_loss,
    explained_variance,
    gae,
    group_advantages,
    kl_estimate,
    masked_mean,
    masked_var,
    whiten,
    zero_variance_fraction,
)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_gae_by_hand() -> None:
    # r = [0, 0, 1], V = [.5, .6, .7], γ = 1, λ = .5:
    # δ2 = 1 - .7 = .3; δ1 = .7 - .6 = .1; δ0 = .6 - .5 = .1
    # A2 = .3; A1 = .1 + .5·.3 = .25; A0 = .1 + .5·.25 = .225; R = A + V
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=1.0, lam=0.5)
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])


def test_gae_with_lambda_one_gives_discounted_returns() -> None:
    # γ = .9, λ = 1: R_t = Σ γ^k r_{t+k} = [.81, .9, 1], whatever the values
    # A0 = (.9·.6 - .5) + .9·(.03 + .9·.3) = .04 + .27 = .31
    adv, ret = gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=0.9, lam=1.0)
    assert ret.tolist()[0] == pytest.approx([0.81, 0.9, 1.0])
    assert adv.tolist()[0] == pytest.approx([0.31, 0.3, 0.3])


@pytest.mark.parametrize(
    ("rewards", "values", "mask", "kept"),
    [
        # left padding (the training batches' layout): the pad is before the episode
        ([7, 0, 0, 1], [9, 0.5, 0.6, 0.7], [0, 1, 1, 1], [1, 2, 3]),
        # right padding: nothing after the last step leaks in
        ([0, 0, 1, 7], [0.5, 0.6, 0.7, 9], [1, 1, 1, 0], [0, 1, 2]),
        # a hole: the masked position is skipped, not a step with reward 5 and value 9
        ([0, 5, 0, 1], [0.5, 9, 0.6, 0.7], [1, 0, 1, 1], [0, 2, 3]),
    ],
)
def test_gae_skips_masked_positions(
    rewards: list[float], values: list[float], mask: list[float], kept: list[int]
) -> None:
    adv, ret = gae(t(rewards), t(values), t(mask), gamma=1.0, lam=0.5)
    assert [adv[0, i].item() for i in kept] == pytest.approx([0.225, 0.25, 0.3])
    assert [ret[0, i].item() for i in kept] == pytest.approx([0.725, 0.85, 1.0])
    masked = [i for i in range(4) if i not in kept]
    assert adv[0, masked].tolist() == [0.0] and ret[0, masked].tolist() == [0.0]


def test_gae_rows_are_independent() -> None:
    adv, _ = gae(t([0, 0, 1], [0, 1, 0]), t([0, 0, 0], [0, 0, 0]), t([1, 1, 1], [0, 1, 1]), 1, 1)
    assert adv.tolist() == [[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]


def test_clipped_policy_loss_by_hand() -> None:
    # ρ = 1.5, A = +1: -1.5 vs clipped -1.2 → -1.2 (clipped wins, no gradient)
    # ρ = 0.5, A = +1: -0.5 vs clipped -0.8 → -0.5 (unclipped)
    # ρ = 0.5, A = -2: +1.0 vs clipped +1.6 → 1.6 (clipped wins)
    # ρ = 1.1, A = -1: +1.1 vs +1.1 (inside the range: not counted as clipped)
    # the fifth token is masked. loss = (-1.2 - .5 + 1.6 + 1.1) / 4 = .25
    ratios = torch.tensor([[1.5, 0.5, 0.5, 1.1, 50.0]], dtype=torch.float64)
    old = torch.full_like(ratios, -2.0)
    logps = (old + ratios.log()).requires_grad_()
    adv = t([1, 1, -2, -1, 100])
    mask = t([1, 1, 1, 1, 0])
    loss, clip_fraction, approx_kl = clipped_policy_loss(logps, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx(0.25)
    assert clip_fraction.item() == pytest.approx(0.5)
    k3 = [1 / r - 1 + math.log(r) for r in (1.5, 0.5, 0.5, 1.1)]
    assert approx_kl.item() == pytest.approx(sum(k3) / 4)
    loss.backward()  # type: ignore[no-untyped-call]
    # d(-Aρ)/d log π = -Aρ on unclipped tokens, 0 on clipped and masked ones
    assert logps.grad is not None
    assert logps.grad.tolist()[0] == pytest.approx([0, -0.5 / 4, 0, 1.1 / 4, 0])


def test_clipped_value_loss_by_hand() -> None:
    # V = 1, V_old = .5, R = 2: V_clip = .7; (1-2)² = 1 < (.7-2)² = 1.69 → 1.69
    # V = 0, V_old = .5, R = 0: V_clip = .3; 0 < .09 → .09
    # loss = ½ (1.69 + .09) / 2 = .445, both tokens clipped
    loss, frac = clipped_value_loss(t([1.0, 0.0]), t([0.5, 0.5]), t([2.0, 0.0]), t([1, 1]), 0.2)
    assert loss.item() == pytest.approx(0.445)
    assert frac.item() == 1.0
    # inside the range both branches agree: ½ · .6² = .18
    loss, frac = clipped_value_loss(t([0.6]), t([0.5]), t([0.0]), t([1]), 0.2)
    assert loss.item() == pytest.approx(0.18) and frac.item() == 0.0


def test_kl_estimators_by_hand() -> None:
    logp, ref = t([-1.0, -1.5, -2.0]), t([-1.5, -1.0, -2.0])  # d = .5, -.5, 0
    assert kl_estimate(logp, ref, "k1").tolist()[0] == pytest.approx([0.5, -0.5, 0.0])
    assert kl_estimate(logp, ref, "k2").tolist()[0] == pytest.approx([0.125, 0.125, 0.0])
    # k3 = e^-d - 1 + d: e^-.5 - .5 = .106531; e^.5 - 1.5 = .148721
    assert kl_estimate(logp, ref, "k3").tolist()[0] == pytest.approx(
        [0.106531, 0.148721, 0.0], abs=1e-6
    )
    with pytest.raises(ValueError, match="k1, k2 or k3"):
        kl_estimate(logp, ref, "k4")


def test_k1_and_k3_estimate_the_true_kl() -> None:
    # Samples from π = Categorical(p) against π_ref = Categorical(q): both estimators are
    # unbiased, k3 is never negative.
    torch.manual_seed(0)
    p, q = torch.tensor([0.6, 0.3, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    true = float((p * (p / q).log()).sum())
    y = torch.multinomial(p, 200_000, replacement=True)
    logp, ref = p.log()[y], q.log()[y]
    for kind in ("k1", "k3"):
        assert kl_estimate(logp, ref, kind).mean().item() == pytest.approx(true, abs=0.01)
    assert (kl_estimate(logp, ref, "k3") >= 0).all()


def test_adaptive_kl_controller_moves_the_right_way() -> None:
    # error = clip(9/6 - 1, ±.2) = .2; β = .1 (1 + .2 · 256/10000) = .100512
    assert adaptive_kl_coef(0.1, 9.0, 6.0, 10_000, 256) == pytest.approx(0.100512)
    assert adaptive_kl_coef(0.1, 3.0, 6.0, 10_000, 256) == pytest.approx(0.099488)
    # error .1 (inside the clip): β = .1 (1 + .1 · .0256)
    assert adaptive_kl_coef(0.1, 6.6, 6.0, 10_000, 256) == pytest.approx(0.1002560)
    assert adaptive_kl_coef(0.1, 6.0, 6.0, 10_000, 256) == pytest.approx(0.1)


def test_group_advantages_by_hand() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 2.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    # RLOO: 1 - (0 + 0 + 1)/3 = 2/3; 0 - (1 + 0 + 1)/3 = -2/3
    rloo = group_advantages(rewards, groups, "rloo")
    assert rloo.tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0])
    # GRPO: mean .5, unbiased std √(1/3): ±.5 · √3 = ±.866 (a 1e-4 epsilon aside)
    grpo = group_advantages(rewards, groups, "grpo")
    assert grpo.tolist() == pytest.approx([0.866, -0.866, -0.866, 0.866, 0, 0, 0], abs=1e-3)
    unscaled = group_advantages(rewards, groups, "grpo", scale=False)
    assert unscaled.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0])
    # groups 1 (all .5) and 2 (one sample) carry no signal
    assert zero_variance_fraction(rewards, groups) == pytest.approx(2 / 3)


def test_whiten_and_masked_statistics_by_hand() -> None:
    values, mask = t([0, 2, 4, 100]), t([1, 1, 1, 0])
    assert masked_mean(values, mask).item() == 2.0
    assert masked_var(values, mask).item() == 4.0  # (4 + 0 + 4) / 2
    assert whiten(values, mask).tolist()[0] == pytest.approx([-1, 0, 1, 0], abs=1e-6)
    assert whiten(values, mask, shift_mean=False).tolist()[0] == pytest.approx([1, 2, 3, 0])


def test_explained_variance_by_hand() -> None:
    returns, mask = t([1, 2, 3]), t([1, 1, 1])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(t([2, 2, 2]), returns, mask) == pytest.approx(0.0)
    # V = R/2: Var(R - V) = Var(R/2) = .25, Var(R) = 1 → .75
    assert explained_variance(returns / 2, returns, mask) == pytest.approx(0.75)
