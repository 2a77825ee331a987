"""Preference training settings (the ``train`` section): DPO, IPO, KTO and ORPO."""

from __future__ import annotations

from dataclasses import dataclass, field

from codealign.settings.helptext import help_text


@dataclass
class PreferenceConfig:
    """How DPO, IPO, KTO and ORPO train; which of them is ``iterate.method``."""

    beta: float = field(
        default=0.1,
        metadata=help_text(
            "DPO/IPO/KTO: strength of the pull to the reference (larger: stay closer); "
            "ORPO: the weight lambda of the odds-ratio term."
        ),
    )
    label_smoothing: float = field(
        default=0.0,
        metadata=help_text("Conservative DPO: the assumed share of flipped labels, in [0, 0.5)."),
    )
    nll_weight: float = field(
        default=0.0,
        metadata=help_text(
            "Weight of a length-normalised NLL term on the chosen (desirable) responses, as "
            "in iterative reasoning preference optimisation; keeps their likelihood up."
        ),
    )
    kto_desirable_weight: float = field(
        default=1.0, metadata=help_text("KTO: lambda_D, the weight of desirable samples.")
    )
    kto_undesirable_weight: float = field(
        default=1.0, metadata=help_text("KTO: lambda_U, the weight of undesirable samples.")
    )
    precompute_reference: bool = field(
        default=True,
        metadata=help_text(
            "Compute the reference log-probs once before training (one no-grad pass), "
            "instead of a reference forward at every step."
        ),
    )
    lr: float = field(default=5e-5, metadata=help_text("AdamW learning rate (warmup, cosine)."))
    warmup_ratio: float = field(
        default=0.1, metadata=help_text("Share of the steps spent warming the learning rate up.")
    )
    weight_decay: float = field(default=0.0, metadata=help_text("AdamW weight decay."))
    epochs: int = field(default=1, metadata=help_text("Passes over the records."))
    batch_size: int = field(default=8, metadata=help_text("Pairs (KTO: samples) per forward pass."))
    grad_accum: int = field(
        default=1, metadata=help_text("Forward passes accumulated into one optimiser step.")
    )
    max_length: int = field(
        default=1024,
        metadata=help_text("Tokens per prompt + completion; the prompt's start is cut first."),
    )
    max_grad_norm: float = field(default=1.0, metadata=help_text("Gradient clipping norm."))
    gradient_checkpointing: bool = field(
        default=False,
        metadata=help_text("Recompute activations in the backward pass: less memory, slower."),
    )
    seed: int = field(default=0, metadata=help_text("Shuffling and initialisation seed."))

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.lr <= 0:
            raise ValueError("beta and lr must be positive")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("label_smoothing must be in [0, 0.5)")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1 or self.max_length < 2:
            raise ValueError("epochs, batch_size and grad_accum must be >= 1, max_length >= 2")
