"""Loading causal LMs and tokenizers; LoRA and QLoRA through peft; adapters and merging.

Everything transformers can load from a directory or a hub name works. On CUDA the default
is bf16; with ``quantization="4bit"`` the base is loaded in NF4 with double quantization
and bf16 compute (QLoRA), prepared for k-bit training. Where 4-bit is not possible the
same LoRA adapters go onto a full-precision base.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from codealign.errors import InputError
from codealign.models.named import is_gguf_model
from codealign.settings.model import ModelConfig

#: LoRA targets per architecture (``config.model_type``): every attention and MLP projection.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "mistral": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "qwen3": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "gemma2": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
    "starcoder2": ("q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"),
    "gpt_bigcode": ("c_attn", "c_proj", "c_fc"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "gpt_neox": ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
}


def resolve_device(config: ModelConfig) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(config: ModelConfig, device: torch.device) -> torch.dtype:
    if config.dtype != "auto":
        return getattr(torch, config.dtype)  # type: ignore[no-any-return]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def model_path(config: ModelConfig) -> str:
    """The directory or hub name to load; 'tiny' is built, and a named model or a ``.gguf``
    file converted, once (then cached) on demand."""
    if config.name == "tiny":
        from codealign.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model())
    if is_gguf_model(config.name):
        from codealign.models.gguf import ensure_gguf_model

        return str(ensure_gguf_model(config.name))
    return config.name


def load_tokenizer(path: str, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """A tokenizer that pads on the left (for batched generation) and has a pad token."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, padding_side="left", trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        raise InputError(f"cannot load a tokenizer from {path!r}: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _disable_cpu_bf16_repack(model: torch.nn.Module) -> None:
    """bitsandbytes on CPUs with avx512-bf16: an eval-mode forward under no_grad repacks
    4-bit weights so that later backward passes give zero gradients. Turn that path off."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    linear4bit = getattr(bnb.nn, "Linear4bit")  # noqa: B009 (not re-exported for mypy)
    for module in model.modules():
        if isinstance(module, linear4bit):
            module.support_avx512bf16_for_cpu = False


def load_model(config: ModelConfig, *, for_training: bool = False) -> Any:
    """The causal LM of ``config`` (with its adapter, if any), on its device."""
    path = model_path(config)
    device = resolve_device(config)
    dtype = resolve_dtype(config, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": config.trust_remote_code}
    if config.quantization == "4bit":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if device.type == "cuda" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": str(device) if device.type == "cpu" else device.index or 0}
    model: Any
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise InputError(f"cannot load a model from {path!r}: {exc}") from None
    if config.quantization == "4bit":
        _disable_cpu_bf16_repack(model)
        if for_training:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
                model, use_gradient_checkpointing=False
            )
    else:
        model = model.to(device)
    if config.adapter:
        model = load_adapter(model, config.adapter, trainable=for_training)
    return model


def lora_targets(model: Any, config: ModelConfig) -> list[str]:
    if config.lora_target_modules:
        return [m.strip() for m in config.lora_target_modules.split(",") if m.strip()]
    model_type = getattr(model.config, "model_type", "")
    if model_type in LORA_TARGETS:
        return list(LORA_TARGETS[model_type])
    # Unknown architecture: every linear layer but the output head.
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "lm_head" not in name
    }
    if not names:
        raise InputError(
            f"no linear layers to put LoRA on in a {model_type!r} model; "
            "set model.lora_target_modules"
        )
    return sorted(names)


def add_lora(model: Any, config: ModelConfig) -> Any:
    """Wrap ``model`` with fresh, trainable LoRA adapters (QLoRA when the base is 4-bit)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model, config),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def load_adapter(model: Any, adapter: str | Path, *, trainable: bool = False) -> Any:
    """A saved adapter on its base model."""
    from peft import PeftModel

    if not Path(adapter, "adapter_config.json").exists():
        raise InputError(f"no LoRA adapter (adapter_config.json) in {adapter}")
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)


def merge_adapter(config: ModelConfig, out: str | Path) -> Path:
    """Merge ``config.adapter`` into a full-precision copy of its base and save it with its
    tokenizer, ready to load without peft (a 4-bit base is reloaded unquantized to merge)."""
    if not config.adapter:
        raise InputError("merging needs model.adapter")
    full = dataclasses.replace(config, quantization="none")
    model = load_model(full)
    merged = model.merge_and_unload()
    out = Path(out)
    merged.save_pretrained(out)
    load_tokenizer(model_path(config), trust_remote_code=config.trust_remote_code).save_pretrained(
        out
    )
    return out
