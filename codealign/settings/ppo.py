"""Online RL settings (the ``ppo`` section): PPO, GRPO and RLOO."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from codealign.settings.helptext import help_text
from codealign.settings.methods import method_spec


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
        return method_spec(method).kl_penalty or "reward"

    def estimator(self, method: str) -> str:
        if self.kl_estimator != "auto":
            return self.kl_estimator
        return "k3" if self.penalty_place(method) == "loss" else "k1"
