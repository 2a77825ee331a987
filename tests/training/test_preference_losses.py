"""Preference losses against values worked out by hand, and the recipe's loss table."""

from __future__ import annotations

import math

import pytest
import torch

from codealign.settings.methods import PREFERENCE_METHODS, method_spec
from codealign.settings.preference import PreferenceConfig
from codealign.training.dpo import (
    PREFERENCE_LOSSES,
    LossBatch,
    SequenceLogps,
    preference_loss,
)
from codealign.training.losses import dpo_loss, ipo_loss, kto_loss, log_odds, nll_term, orpo_loss


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_dpo_loss_by_hand() -> None:
    # chosen ratio -1 - (-1.5) = 0.5, rejected ratio -2 - (-1.5) = -0.5, h = 1, βh = 0.5:
    # -log σ(0.5) = log(1 + e^-0.5) = 0.474077
    loss, chosen, rejected = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)
    assert chosen.tolist() == [0.25] and rejected.tolist() == [-0.25]


def test_conservative_dpo_by_hand() -> None:
    # 0.9 · log(1 + e^-0.5) + 0.1 · log(1 + e^0.5) = 0.9 · 0.474077 + 0.1 · 0.974077
    loss, _, _ = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5, label_smoothing=0.1)
    assert loss.item() == pytest.approx(0.524077, abs=1e-6)


def test_dpo_loss_is_log2_at_the_reference_and_averages_the_batch() -> None:
    loss, _, _ = dpo_loss(t(-3.0, -1.0), t(-4.0, -2.0), t(-3.0, -1.0), t(-4.0, -2.0))
    assert loss.item() == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), label_smoothing=0.5)


def test_dpo_gradient_raises_chosen_and_lowers_rejected() -> None:
    chosen, rejected = t(-1.0).requires_grad_(), t(-1.0).requires_grad_()
    loss, _, _ = dpo_loss(chosen, rejected, t(-1.0), t(-1.0), beta=0.1)
    loss.backward()
    # d/dh of -log σ(βh) at h = 0 is -β/2.
    assert chosen.grad is not None and rejected.grad is not None
    assert chosen.grad.item() == pytest.approx(-0.05)
    assert rejected.grad.item() == pytest.approx(0.05)


def test_ipo_loss_by_hand() -> None:
    # β = 0.5: the target gap is 1/(2β) = 1.
    at_target, _, _ = ipo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    assert at_target.item() == pytest.approx(0.0)
    # h = (0 - (-3)) - 0 = 3: (3 - 1)² = 4; and h = 0 gives 1; mean 2.5
    loss, _, _ = ipo_loss(t(0.0, -1.0), t(-3.0, -1.0), t(0.0, -1.0), t(0.0, -1.0), beta=0.5)
    assert loss.item() == pytest.approx(2.5)


def test_kto_loss_by_hand() -> None:
    # r = [1, 0], z0 = 0.5: desirable 1 - σ(0.5) = 0.377541; undesirable 1 - σ(0.5) too,
    # weighted 1 and 2: mean (0.377541 + 0.755082) / 2 = 0.566311
    loss, rewards = kto_loss(
        t(0.0, -1.0), t(-1.0, -1.0), torch.tensor([True, False]), 0.5, beta=1.0,
        desirable_weight=1.0, undesirable_weight=2.0,
    )  # fmt: skip
    assert loss.item() == pytest.approx(0.566311, abs=1e-6)
    assert rewards.tolist() == [1.0, 0.0]


def test_kto_reference_point_is_clamped_and_carries_no_gradient() -> None:
    policy = t(0.0, -1.0).requires_grad_()
    kl = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    # z0 = max(-1, 0) = 0: desirable 1 - σ(1) = 0.268941, undesirable 1 - σ(0) = 0.5
    loss, _ = kto_loss(policy, t(-1.0, -1.0), torch.tensor([True, False]), kl, beta=1.0)
    assert loss.item() == pytest.approx((0.268941 + 0.5) / 2, abs=1e-6)
    loss.backward()
    assert kl.grad is None
    assert policy.grad is not None and policy.grad[0] < 0 < policy.grad[1]


def test_orpo_loss_by_hand() -> None:
    # p_c = 0.5: odds 1, log odds 0; p_r = 0.2: odds 0.25, log odds -1.386294;
    # -log σ(1.386294) = log(1.25) = 0.223144; NLL of the chosen side log 2 = 0.693147;
    # total 0.693147 + 0.1 · 0.223144 = 0.715461
    loss, ratio = orpo_loss(t(math.log(0.5)), t(math.log(0.2)), t(math.log(2)), lam=0.1)
    assert ratio.item() == pytest.approx(0.223144, abs=1e-6)
    assert loss.item() == pytest.approx(0.715461, abs=1e-6)
    assert log_odds(t(math.log(0.8))).item() == pytest.approx(math.log(4))


def test_nll_term_is_length_normalised() -> None:
    # -mean(-2/2, -6/3) = 1.5
    assert nll_term(t(-2.0, -6.0), t(2.0, 3.0)).item() == pytest.approx(1.5)


# -- the recipe's loss table: method name -> loss and logs on a batch ----------------------


def loss_batch(reference: bool = True) -> LossBatch:
    """Two units: sums of log-probs over (2, 4) first and (1, 2) second tokens."""
    policy = SequenceLogps(t(-1.0, -4.0), t(-2.0, -1.0), t(2.0, 4.0), t(1.0, 2.0))
    ref = (t(-1.5, -4.0), t(-1.5, -1.0)) if reference else None
    return LossBatch(policy, ref, (True, False))


def test_the_table_holds_every_preference_method() -> None:
    assert set(PREFERENCE_LOSSES) == set(PREFERENCE_METHODS)
    assert preference_loss("ipo") is PREFERENCE_LOSSES["ipo"]
    with pytest.raises(ValueError, match=r"no preference loss 'ppo'; known: dpo, ipo"):
        preference_loss("ppo")


def test_dpo_entry_is_the_dpo_loss_plus_the_nll_term() -> None:
    config = PreferenceConfig(beta=0.5, nll_weight=0.5)
    loss, logs = preference_loss("dpo")(loss_batch(), config)
    plain, chosen, rejected = dpo_loss(
        t(-1.0, -4.0), t(-2.0, -1.0), t(-1.5, -4.0), t(-1.5, -1.0), 0.5
    )
    nll = (1.0 / 2 + 4.0 / 4) / 2  # the chosen sides' mean token NLL
    assert loss.item() == pytest.approx(plain.item() + 0.5 * nll)
    assert logs["loss"] == pytest.approx(loss.item())
    assert logs["chosen_logp_per_token"] == pytest.approx(-nll)
    assert logs["chosen_reward"] == pytest.approx(chosen.mean().item())
    assert logs["rejected_reward"] == pytest.approx(rejected.mean().item())
    # unit 0: 0.25 > -0.25; unit 1: 0 = 0 (a tie counts half)
    assert logs["reward_accuracy"] == 0.75
    assert list(logs) == [
        "loss", "chosen_logp_per_token", "chosen_reward", "rejected_reward",
        "reward_accuracy", "reward_margin",
    ]  # fmt: skip


def test_ipo_entry_works_on_per_token_averages() -> None:
    loss, _ = preference_loss("ipo")(loss_batch(), PreferenceConfig(beta=0.5))
    expected, _, _ = ipo_loss(t(-0.5, -1.0), t(-2.0, -0.5), t(-0.75, -1.0), t(-1.5, -0.5), beta=0.5)
    assert loss.item() == pytest.approx(expected.item())


def test_kto_entry_splits_rewards_by_label_and_logs_the_kl() -> None:
    loss, logs = preference_loss("kto")(loss_batch(), PreferenceConfig(beta=0.5))
    # KL reference point from the mismatched (second) sequences: mean(-2 + 1.5, -1 + 1) < 0
    assert logs["kl"] == 0.0
    expected, rewards = kto_loss(
        t(-1.0, -4.0), t(-1.5, -4.0), torch.tensor([True, False]), 0.0, 0.5
    )
    assert loss.item() == pytest.approx(expected.item())
    assert logs["chosen_reward"] == pytest.approx(rewards[0].item())
    assert logs["rejected_reward"] == pytest.approx(rewards[1].item())
    assert logs["chosen_logp_per_token"] == pytest.approx(-0.5)  # the desirable sample only
    assert "reward_accuracy" not in logs  # unpaired samples: no pairwise accuracy


def test_orpo_entry_needs_no_reference_and_dpo_does() -> None:
    loss, logs = preference_loss("orpo")(loss_batch(reference=False), PreferenceConfig(beta=0.5))
    expected, ratio = orpo_loss(t(-0.5, -1.0), t(-2.0, -0.5), t(0.5, 1.0), 0.5)
    assert loss.item() == pytest.approx(expected.item())
    assert logs["odds_ratio_loss"] == pytest.approx(ratio.item())
    assert not method_spec("orpo").uses_reference and method_spec("dpo").uses_reference
    with pytest.raises(ValueError, match="needs the reference"):
        preference_loss("dpo")(loss_batch(reference=False), PreferenceConfig())
