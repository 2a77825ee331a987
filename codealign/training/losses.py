"""Loss functions as pure tensor maths: no models, no state, easy to check by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float | None = None
) -> torch.Tensor:
    """Mean of -log σ(r_chosen - r_rejected - margin) over the batch.

    The Bradley-Terry model says P(chosen ≻ rejected) = σ(r_c - r_r). An optional margin
    (per pair, e.g. how strongly the chosen side is preferred) asks for a wider gap, as in
    Llama 2's reward model. ``logsigmoid`` keeps large gaps numerically stable.
    """
    gap = chosen - rejected
    if margin is not None:
        gap = gap - margin
    return -F.logsigmoid(gap).mean()


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
