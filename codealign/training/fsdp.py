"""FSDP: the policy's base model sharded over the processes, for models that do not fit
one device (``accelerate launch --use_fsdp ...``).

Each decoder layer (the classes the model names in ``_no_split_modules``) becomes one
FSDP unit, and an outer unit holds the rest: embeddings, final norm and LM head. A
process keeps 1/N of every unit's weights and gathers a unit's whole weights only while
it runs. The recipes' log-prob passes call the backbone and the head apart (the head sees
only the completion tokens), so they run inside the outer unit's ``forward``
(:func:`run`): its hooks gather the outer weights for the pass and its backward. The
adapters' gradients are averaged by FSDP's reduce-scatter; what FSDP does not hold (PPO's
value head) is averaged as under DDP (``Ranks.average_gradients``).

This is torch's ``fully_shard`` (FSDP2) whatever ``--fsdp_version`` says: it keeps each
parameter's own ``requires_grad``, which a frozen base with trainable adapters needs.
Of accelerate's FSDP settings, ``reshard_after_forward`` and ``offload_params`` apply;
activation checkpointing is the recipe's own ``gradient_checkpointing``.

Every process must run the same forwards in the same order (each one gathers weights
from all of them): the recipes give an empty or short shard zero-weight passes to match.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from codealign.errors import InputError

_ROOT = "_codealign_fsdp_root"  # on the model's __dict__: not a submodule (no cycle)


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class FsdpOptions:
    """What ``accelerate launch --use_fsdp`` asked for, read from its environment."""

    reshard_after_forward: bool = True
    offload_params: bool = False

    @classmethod
    def from_env(cls) -> FsdpOptions:
        return cls(
            reshard_after_forward=_flag("FSDP_RESHARD_AFTER_FORWARD", True)
            and os.environ.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD") != "SHARD_GRAD_OP",
            offload_params=_flag("FSDP_OFFLOAD_PARAMS", False),
        )


def requested() -> bool:
    """Whether the launch asked for FSDP (``accelerate launch --use_fsdp``)."""
    return _flag("ACCELERATE_USE_FSDP", False)


class _Outer(torch.nn.Module):
    """The outermost unit: runs a log-prob pass as its forward."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        out = fn(self.model, *args)
        # FSDP hooks the outputs' backward; an in-place op on a view would drop the hook.
        if isinstance(out, tuple):
            return tuple(_owned(t) for t in out)
        return _owned(out)


def _owned(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value._is_view():
        return value.clone()
    return value


def layer_classes(base: Any) -> set[str]:
    """The decoder layer classes of a transformers model: the units FSDP shards by."""
    names = set(getattr(base, "_no_split_modules", None) or ())
    if not names:
        raise InputError(
            f"{type(base).__name__} names no decoder layer classes (_no_split_modules), "
            "so FSDP has nothing to shard it by: launch without --use_fsdp"
        )
    return names


def shard(model: Any, world: int, options: FsdpOptions) -> int:
    """Shard ``model`` (a peft model) over ``world`` processes in place; returns how many
    layer units it made. Adapters must all be loaded first: ones added later would not
    be sharded."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    base = model.get_base_model()
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        raise InputError(
            "FSDP shards an unquantized base: use quantization none with --use_fsdp, or "
            "4-bit QLoRA without it (each process then holds the whole NF4 base)"
        )
    mesh = init_device_mesh("cuda" if torch.cuda.is_available() else "cpu", (world,))
    kwargs: dict[str, Any] = {
        "mesh": mesh,
        "reshard_after_forward": options.reshard_after_forward,
        "offload_policy": CPUOffloadPolicy() if options.offload_params else OffloadPolicy(),
    }
    classes = layer_classes(base)
    layers = [m for m in base.modules() if type(m).__name__ in classes]
    for layer in layers:
        fully_shard(layer, **kwargs)
    outer = _Outer(model)
    fully_shard(outer, **{**kwargs, "reshard_after_forward": False})  # backward needs it next
    object.__setattr__(model, _ROOT, outer)
    return len(layers)


def is_sharded(model: Any) -> bool:
    return _ROOT in getattr(model, "__dict__", {})


def run(model: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(model, *args)``, inside the outer unit when ``model`` is sharded. ``fn`` must
    return tensors (or tuples of them): FSDP hooks its backward onto them."""
    outer = model.__dict__.get(_ROOT) if is_sharded(model) else None
    return fn(model, *args) if outer is None else outer(fn, *args)


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def gathered_adapters(model: Any) -> dict[str, torch.Tensor] | None:
    """Every adapter's weights whole, on the CPU, keyed as in ``model.state_dict()``
    (what peft's ``save_pretrained(state_dict=...)`` takes); None when ``model`` is not
    sharded. Collective: every process must call it."""
    if not is_sharded(model):
        return None
    return {
        name: _full(p.detach()).cpu().contiguous()
        for name, p in model.named_parameters()
        if "lora_" in name
    }


def local_parameter_bytes(model: Any) -> int:
    """The bytes of model weights this process holds (its shards, when sharded)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for p in model.parameters():
        local = p.to_local() if isinstance(p, DTensor) else p
        total += local.numel() * local.element_size()
    return total
