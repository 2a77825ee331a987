"""Loss functions as pure tensor maths: no models, no state, easy to check by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of -log σ(r_chosen - r_rejected - margin) over the batch (weighted by
    ``weight`` per pair: Σ w·loss / Σ w).

    The Bradley-Terry model says P(chosen ≻ rejected) = σ(r_c - r_r). An optional margin
    (per pair, e.g. how strongly the chosen side is preferred) asks for a wider gap, as in
    Llama 2's reward model. ``logsigmoid`` keeps large gaps numerically stable.
    """
    gap = chosen - rejected
    if margin is not None:
        gap = gap - margin
    losses = -F.logsigmoid(gap)
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs whose chosen side has the higher reward (ties count as half)."""
    if chosen.numel() == 0:
        return float("nan")
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    return float(wins.mean())


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sigmoid DPO loss (Rafailov et al., 2023), averaged over the batch.

    With h = (log π(y_c) - log π_ref(y_c)) - (log π(y_r) - log π_ref(y_r)), the loss is
    -(1 - ε) log σ(βh) - ε log σ(-βh); ε > 0 is conservative DPO, which assumes a share ε
    of the labels are flipped. Returns (loss, chosen rewards, rejected rewards), the
    implicit rewards β(log π - log π_ref) detached for logging.
    """
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_ratio - rejected_ratio)
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IPO (Azar et al., 2023): (h - 1/(2β))², which regresses the log-ratio gap h to a
    finite target instead of pushing it to infinity. The paper (and TRL) feed it
    per-token average log-probs. Returns (loss, chosen rewards, rejected rewards)."""
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    losses = (chosen_ratio - rejected_ratio - 1 / (2 * beta)) ** 2
    return losses.mean(), beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al., 2024) on unpaired samples, averaged over the batch.

    r = log π(y) - log π_ref(y); z0 is the reference point, an estimate of
    KL(π ‖ π_ref) that carries no gradient (clamped at 0). A desirable sample costs
    λ_D (1 - σ(β(r - z0))), an undesirable one λ_U (1 - σ(β(z0 - r))); the paper picks the
    weights so that λ_D n_D / (λ_U n_U) lies in [1, 4/3]. Returns (loss, rewards βr).
    """
    z0 = torch.as_tensor(kl, dtype=policy_logps.dtype, device=policy_logps.device)
    z0 = z0.detach().clamp(min=0)
    ratio = policy_logps - ref_logps
    desirable = desirable.bool()
    losses = torch.where(
        desirable,
        desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0))),
        undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio))),
    )
    return losses.mean(), beta * ratio.detach()


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) for p = exp(mean log-prob), stable as p approaches 0 or 1."""
    return mean_logps - torch.log1p(-torch.exp(mean_logps).clamp(max=1 - 1e-6))


def orpo_loss(
    chosen_mean_logps: torch.Tensor,
    rejected_mean_logps: torch.Tensor,
    chosen_nll: torch.Tensor,
    lam: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ORPO (Hong et al., 2024), reference-free: the SFT loss on the chosen side plus
    λ · -log σ(log odds(y_c) - log odds(y_r)), odds taken on per-token average
    probabilities. ``chosen_nll`` is the chosen side's mean token NLL per sequence.
    Returns (loss, the odds-ratio term alone, for logging)."""
    ratio_term = -F.logsigmoid(log_odds(chosen_mean_logps) - log_odds(rejected_mean_logps))
    return (chosen_nll + lam * ratio_term).mean(), ratio_term.detach().mean()


def nll_term(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """The length-normalised NLL of the chosen responses, -mean(log π(y_c) / |y_c|): the
    extra term of iterative reasoning preference optimisation (Pang et al., 2024), which
    stops DPO from lowering the likelihood of the very answers it prefers."""
    return -(chosen_logps / chosen_lengths.clamp(min=1)).mean()


# -- policy-gradient maths (PPO, GRPO, RLOO) ----------------------------------------------
# Per-token tensors are [batch, tokens] with a mask that is 1 on completion tokens.


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of ``values`` where ``mask`` is 1 (0 with fewer than two)."""
    mask = mask.to(values.dtype)
    n = mask.sum()
    if n < 2:
        return torch.zeros((), dtype=values.dtype, device=values.device)
    centred = (values - masked_mean(values, mask)) * mask
    return (centred**2).sum() / (n - 1)


def whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """``values`` scaled to unit variance over the mask (and centred, unless
    ``shift_mean`` is False: rewards keep their sign); 0 outside the mask."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(values.dtype)


def kl_estimate(logps: torch.Tensor, ref_logps: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimators of KL(π ‖ π_ref) from tokens sampled from π (Schulman, 2020).

    With d = log π(y) - log π_ref(y): k1 = d (unbiased, can be negative), k2 = d²/2
    (biased, low variance), k3 = e^{-d} - 1 + d (unbiased and never negative).
    """
    d = logps - ref_logps
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"KL estimator must be k1, k2 or k3, got {kind!r}")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over [batch, tokens].

    δ_t = r_t + γ V(s_{t+1}) - V(s_t) and A_t = δ_t + γλ A_{t+1}, where t+1 is the next
    *unmasked* position (masked positions are not steps: left padding, right padding or
    holes all work) and the value after the last step is 0 (the episode ends).
    Returns (advantages, returns = advantages + values), both 0 where masked.
    """
    mask = mask.to(torch.bool)
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        current = delta + gamma * lam * next_advantage
        step = mask[:, t]
        advantages[:, t] = torch.where(step, current, torch.zeros_like(current))
        next_advantage = torch.where(step, current, next_advantage)
        next_value = torch.where(step, values[:, t], next_value)
    returns = (advantages + values) * mask.to(values.dtype)
    return advantages, returns


def clipped_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al., 2017), as a loss averaged over tokens:
    max(-A ρ, -A clip(ρ, 1-ε, 1+ε)) with ρ = π/π_old.

    Returns (loss, clip fraction: the share of tokens where the clipped branch won,
    approximate KL(π_old ‖ π) by the k3 estimator), the last two detached.
    """
    log_ratio = logps - old_logps
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip, 1 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).to(logps.dtype), mask).detach()
    approx_kl = masked_mean(torch.expm1(-log_ratio) + log_ratio, mask).detach()
    return loss, clip_fraction, approx_kl


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """½ max((V - R)², (V_clipped - R)²) averaged over tokens, with V_clipped kept within
    ε of the value at rollout time. Returns (loss, share of tokens where clipping won)."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    clip_fraction = masked_mean((clipped_error > unclipped_error).to(values.dtype), mask)
    return loss, clip_fraction.detach()


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R): 1 is a perfect critic, 0 one no better than a constant."""
    var_returns = masked_var(returns, mask)
    if var_returns == 0:
        return float("nan")
    return float(1 - masked_var(returns - values, mask) / var_returns)


def adaptive_kl_coef(coef: float, kl: float, target: float, horizon: float, n_steps: int) -> float:
    """Ziegler et al. (2019)'s controller: β ← β (1 + clip(KL/target - 1, ±0.2) n / H),
    which raises β while the policy drifts further than ``target`` and lowers it while it
    stays closer; ``n_steps`` samples were seen since the last update, ``horizon`` sets
    how fast β moves."""
    error = min(max(kl / target - 1, -0.2), 0.2)
    return coef * (1 + error * n_steps / horizon)


def group_advantages(
    rewards: torch.Tensor, groups: torch.Tensor, kind: str = "grpo", scale: bool = True
) -> torch.Tensor:
    """One advantage per sample from the other samples of its prompt (group).

    grpo (Shao et al., 2024): (r - group mean), divided by the group's standard deviation
    when ``scale`` (Dr. GRPO leaves it out). rloo (Ahmadian et al., 2024): r minus the mean
    of the *other* samples of the group, an unbiased baseline. Groups of one sample and
    groups whose rewards are all equal get 0: they carry no signal.
    """
    if kind not in ("grpo", "rloo"):
        raise ValueError(f"group advantage must be grpo or rloo, got {kind!r}")
    out = torch.zeros_like(rewards)
    for g in sorted(set(groups.tolist())):
        idx = (groups == g).nonzero().squeeze(-1)
        r = rewards[idx]
        n = len(r)
        if n < 2:
            continue
        if kind == "rloo":
            out[idx] = r - (r.sum() - r) / (n - 1)
        else:
            centred = r - r.mean()
            std = r.std()
            out[idx] = centred / (std + 1e-4) if scale and std > 0 else centred
    return out


def zero_variance_fraction(rewards: torch.Tensor, groups: torch.Tensor) -> float:
    """The share of groups whose rewards are all equal (no group-relative signal)."""
    uniq = sorted(set(groups.tolist()))
    flat = sum(bool((rewards[groups == g] == rewards[groups == g][0]).all()) for g in uniq)
    return flat / max(1, len(uniq))
