"""Reward model training settings (the ``reward_model`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from codealign.settings.helptext import help_text
from codealign.settings.model import ModelConfig


@dataclass
class RewardModelConfig:
    base: str = field(
        default="tiny",
        metadata=help_text("Backbone: a local model directory, a hub name, or 'tiny'."),
    )
    finetune: Literal["full", "lora"] = field(
        default="full",
        metadata=help_text(
            "'full' trains every backbone weight (fine for tiny); 'lora' trains adapters "
            "(with quantization=4bit: QLoRA)."
        ),
    )
    quantization: Literal["none", "4bit"] = field(
        default="none",
        metadata=help_text("4bit loads the backbone in NF4 (QLoRA; needs finetune=lora)."),
    )
    device: str = field(default="auto", metadata=help_text("cuda, cpu; auto: CUDA if any."))
    lora_r: int = field(default=16, metadata=help_text("LoRA rank (finetune=lora)."))
    lora_alpha: int = field(default=32, metadata=help_text("LoRA alpha (finetune=lora)."))
    max_length: int = field(
        default=256,
        metadata=help_text(
            "Tokens per (prompt, response); the start of a long prompt is dropped first."
        ),
    )
    epochs: int = field(default=2, metadata=help_text("Passes over the training pairs."))
    batch_size: int = field(default=16, metadata=help_text("Pairs per optimiser step."))
    lr: float = field(default=3e-4, metadata=help_text("AdamW learning rate (cosine decay)."))
    margin: float = field(
        default=0.0,
        metadata=help_text(
            "Margin term: ask for r(chosen) - r(rejected) >= margin x the pair's own 'margin' "
            "field (1 where absent). 0 is the plain Bradley-Terry loss."
        ),
    )
    eval_fraction: float = field(
        default=0.1,
        metadata=help_text(
            "Share of pairs held out for evaluation: whole families where pairs have 'family'."
        ),
    )
    holdout_families: str | None = field(
        default=None,
        metadata=help_text(
            "Comma-separated families to hold out instead of drawing them at random."
        ),
    )
    checkpoint_every: int = field(default=100, metadata=help_text("Steps between checkpoints."))
    seed: int = field(default=0, metadata=help_text("Seed for initialisation, split and order."))

    def __post_init__(self) -> None:
        if self.quantization == "4bit" and self.finetune != "lora":
            raise ValueError("quantization=4bit needs finetune=lora")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 8:
            raise ValueError("epochs and batch_size must be at least 1, max_length at least 8")

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            name=self.base,
            device=self.device,
            quantization=self.quantization,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=0.0,
        )
