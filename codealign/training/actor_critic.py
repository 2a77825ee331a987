"""The RL recipe's one base model in its three roles: policy, reference and critic.

The policy is the ``default`` LoRA adapter; the reference is the same base with the
adapters off, or a frozen saved adapter (``adapters.reference_weights``); PPO's critic is
a linear value head on the policy's hidden states, or on those of a second LoRA adapter,
``value`` (a separate trunk at the cost of one more forward). The value head and value
adapter are saved with the policy, and a later round loads them from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from codealign.settings.methods import method_spec
from codealign.settings.model import ModelConfig
from codealign.settings.ppo import PPOConfig
from codealign.training import fsdp
from codealign.training.adapters import (
    enable_gradient_checkpointing,
    load_policy,
    load_reference,
)
from codealign.training.distributed import Ranks
from codealign.training.sequences import Batch, completion_hidden

VALUE_ADAPTER = "value"
VALUE_HEAD_FILE = "value_head.safetensors"


def _activate(model: Any, adapter: str, trainable: Sequence[torch.nn.Parameter]) -> None:
    """Route the forward through ``adapter``; peft's switch freezes the other adapters,
    which stay trained here."""
    model.base_model.set_adapter(adapter)
    for p in trainable:
        p.requires_grad_(True)


def _no_dropout(model: Any) -> None:
    """Dropout off: the ratio π/π_old must be 1 before the first update, and the
    rollout policy sampled without it."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@dataclass
class ActorCritic:
    """The base model with the policy adapter, the value head (and value adapter)."""

    model: Any
    value_head: torch.nn.Linear
    uses_critic: bool
    separate_critic: bool  # the critic reads a second LoRA adapter's hidden states
    lora: list[torch.nn.Parameter]  # every adapter's weights
    policy_params: list[torch.nn.Parameter]
    critic_params: list[torch.nn.Parameter]
    pad_id: int
    device: torch.device

    @property
    def trainable(self) -> list[torch.nn.Parameter]:
        return self.policy_params + self.critic_params

    def route_to_policy(self) -> None:
        _activate(self.model, "default", self.lora)

    def values(self, batch: Batch, policy_hidden: torch.Tensor) -> torch.Tensor:
        """V of every state of ``batch``: from the policy's hidden states, or (separate
        critic) from a forward through the value adapter."""
        hidden = policy_hidden
        if self.separate_critic:
            _activate(self.model, VALUE_ADAPTER, self.lora)
            hidden = completion_hidden(self.model, batch)
            self.route_to_policy()
        values: torch.Tensor = self.value_head(hidden.float()).squeeze(-1)
        return values

    def optimizer(self, config: PPOConfig) -> torch.optim.AdamW:
        """AdamW; the critic gets its own learning rate (it starts from zero)."""
        groups: list[dict[str, Any]] = [{"params": self.policy_params, "lr": config.lr}]
        if self.critic_params:
            groups.append({"params": self.critic_params, "lr": config.value_lr or config.lr})
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def load_actor_critic(
    model_config: ModelConfig,
    config: PPOConfig,
    method: str,
    pad_id: int,
    ranks: Ranks | None = None,
    reference: str | Path = "base",
) -> ActorCritic:
    """The policy (its adapter, or fresh LoRA) and, for PPO, the critic: the value head
    (and value adapter) saved with the adapter, or fresh (a zero head). Under FSDP
    (``ranks.sharded``) the base and every adapter are sharded over the processes; the
    value head is small and stays whole on each."""
    from safetensors.torch import load_file

    uses_critic = method_spec(method).critic
    model = load_policy(model_config)
    _no_dropout(model)
    hidden_size = model.get_base_model().config.get_text_config().hidden_size
    device = next(model.parameters()).device
    value_head = torch.nn.Linear(hidden_size, 1).to(device)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    separate_critic = uses_critic and config.value_model == "adapter"
    if uses_critic and model_config.adapter:
        head_file = Path(model_config.adapter) / VALUE_HEAD_FILE
        if head_file.exists():
            value_head.load_state_dict(load_file(str(head_file)))
    if separate_critic:
        saved = Path(model_config.adapter or "", VALUE_ADAPTER)
        if model_config.adapter and (saved / "adapter_config.json").exists():
            model.load_adapter(str(saved), adapter_name=VALUE_ADAPTER, is_trainable=True)
        else:
            model.add_adapter(VALUE_ADAPTER, model.peft_config["default"])
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if ranks is not None and ranks.sharded:
        load_reference(model, reference)
        fsdp.shard(model, ranks.world, fsdp.FsdpOptions.from_env())
    model.train()
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    critic_params = list(value_head.parameters()) if uses_critic else []
    if separate_critic:
        critic_params += [p for n, p in model.named_parameters() if f".{VALUE_ADAPTER}." in n]
    policy_params = [p for p in lora if all(p is not q for q in critic_params)]
    return ActorCritic(
        model,
        value_head,
        uses_critic,
        separate_critic,
        lora,
        policy_params,
        critic_params,
        pad_id,
        device,
    )
