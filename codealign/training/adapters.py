"""The model side every recipe shares: the policy's LoRA adapter on one base model.

Loading the tokenizer and the policy (its saved adapter, or fresh LoRA), gradient
checkpointing, running the frozen reference on the same weights, and saving the adapter
atomically with its metrics and step log.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from codealign.jsonl import atomic_writer
from codealign.settings.model import ModelConfig

REFERENCE_ADAPTER = "reference"


def load_policy_tokenizer(model_config: ModelConfig) -> Any:
    """The tokenizer of ``model_config``'s base model."""
    from codealign.models.loading import load_tokenizer, model_path

    return load_tokenizer(
        model_path(model_config), trust_remote_code=model_config.trust_remote_code
    )


def pad_id_of(tokenizer: Any) -> int:
    """The id that pads a batch (0 when the tokenizer has none: the mask hides it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def load_policy(model_config: ModelConfig) -> Any:
    """The base model for training with the policy as its ``default`` adapter: the saved
    one of ``model_config``, or fresh LoRA."""
    from codealign.models.loading import add_lora, load_model

    model = load_model(model_config, for_training=True)
    if not model_config.adapter:
        model = add_lora(model, model_config)
    return model


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass. The inputs must require grad, or a
    frozen base with only adapters trainable would give the checkpointed blocks none."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def load_reference(model: Any, reference: str | Path) -> None:
    """Load a saved reference adapter (frozen) next to the policy, once; nothing for
    "base" and "start"."""
    if str(reference) in ("base", "start") or REFERENCE_ADAPTER in model.peft_config:
        return
    model.load_adapter(str(reference), adapter_name=REFERENCE_ADAPTER)
    model.set_adapter("default")  # loading may route to the new adapter


@contextlib.contextmanager
def reference_weights(model: Any, reference: str | Path) -> Iterator[None]:
    """Run the reference policy: ``base`` turns the adapters off, ``start`` is the policy
    as it is now (only before training), a path is a frozen saved adapter."""
    if reference == "base":
        with model.disable_adapter():
            yield
    elif reference == "start":
        yield
    else:
        load_reference(model, reference)
        model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield
        finally:
            model.set_adapter("default")  # makes "default" trainable, "reference" frozen


def save_adapter(
    model: Any,
    out: Path,
    metrics: dict[str, Any],
    log: Sequence[dict[str, float]],
    extra: Callable[[Path], None] | None = None,
    *,
    state: dict[str, Any] | None = None,
) -> None:
    """Write the adapter, its metrics and its step log (and whatever ``extra`` writes into
    the folder) next to ``out``, then rename the folder into place: a folder that exists
    is a finished one. ``state``: the adapters' weights gathered whole, when FSDP holds
    only shards of them."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gathered = {} if state is None else {"state_dict": state}
    model.save_pretrained(str(tmp), selected_adapters=["default"], **gathered)
    if extra is not None:
        extra(tmp)
    with atomic_writer(tmp / "train_metrics.json") as fh:
        json.dump(metrics, fh, indent=2)
    with atomic_writer(tmp / "train_log.jsonl") as fh:
        for row in log:
            fh.write(json.dumps(row) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
