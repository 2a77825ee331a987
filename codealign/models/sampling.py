"""Sampling completions: the backend protocol, and the transformers backend.

A backend turns prompts into completions and keeps the token ids of both sides, so that
training later reuses them exactly instead of re-tokenizing across the prompt/completion
boundary. It streams: each prompt's samples are handed on as soon as they are all done, so
the sandbox can run them while the next prompts are still being sampled. The vLLM backend
(``codealign.models.vllm_backend``) is the same protocol on another engine;
``codealign.models.stream`` picks one and runs a model through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from codealign.prompting import FENCE_STOPS, answer_prefix, chat_fields, instruction
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.tasks import Task


@dataclass(frozen=True)
class Generation:
    """One sampled continuation: the kept text and the token ids that decode to it."""

    text: str
    prompt_ids: list[int]
    completion_ids: list[int]
    finish_reason: str  # "stop" (a stop sequence or end of sequence) or "length"


class SamplingBackend(Protocol):
    """Generates ``n`` continuations per prompt. Prompts are token ids, already rendered
    and encoded by the caller, so every backend sees exactly the same ones."""

    def stream(
        self, prompts: Sequence[list[int]], sampling: SamplingConfig, *, stop: Sequence[str]
    ) -> Iterator[tuple[int, list[Generation]]]:
        """(prompt index, its ``n`` generations), as each prompt finishes, in any order."""
        ...


def generate(
    backend: SamplingBackend,
    prompts: Sequence[list[int]],
    sampling: SamplingConfig,
    *,
    stop: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> list[list[Generation]]:
    """Every prompt's generations, in prompt order."""
    out: list[list[Generation]] = [[] for _ in prompts]
    for index, generations in backend.stream(prompts, sampling, stop=stop):
        out[index] = generations
        if progress is not None:
            progress(len(generations))
    return out


def render_prompt(task: Task, config: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> str:
    """The text the model continues: the raw prompt, or the chat-templated instruction
    and the start of the answer (``model.answer_prefix``)."""
    if config.prompt_format == "completion":
        return task.prompt
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction(task)}], tokenize=False, add_generation_prompt=True
    )
    return str(rendered) + answer_prefix(task, config.answer_prefix)


def stop_sequences(config: ModelConfig, sampling: SamplingConfig) -> tuple[str, ...]:
    """Completion prompts stop at ``sampling.stop``; a chat answer that the prompt opened
    with a fence, at the closing fence; a free chat answer, at the end of sequence."""
    if config.prompt_format == "completion":
        return sampling.stop
    return FENCE_STOPS if config.answer_prefix != "none" else ()


def as_sample_fields(task: Task, generation: Generation, config: ModelConfig) -> dict[str, Any]:
    """``completion`` for completion prompts; ``solution`` (a whole program) for chat."""
    if config.prompt_format == "completion":
        return {"completion": generation.text}
    prefix = answer_prefix(task, config.answer_prefix)
    return chat_fields(task, generation.text, prefix=prefix)


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


def eos_ids(tokenizer: PreTrainedTokenizerBase, configured: int | list[int] | None) -> set[int]:
    """The token ids that end a sequence: the generation config's and the tokenizer's."""
    listed = configured if isinstance(configured, list) else [configured]
    ids = {i for i in listed if i is not None}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class TransformersBackend:
    """Batched sampling with ``model.generate``: left padding, KV cache, stop sequences."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        cache_implementation: str | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self._eos_ids = eos_ids(tokenizer, model.generation_config.eos_token_id)
        # transformers' KV cache kind ("static": preallocated, for torch.compile); None:
        # the model's default dynamic cache.
        self.cache_implementation = cache_implementation

    def stream(
        self, prompts: Sequence[list[int]], sampling: SamplingConfig, *, stop: Sequence[str]
    ) -> Iterator[tuple[int, list[Generation]]]:
        jobs = [(p, j) for p in range(len(prompts)) for j in range(sampling.n)]
        out: list[list[Generation]] = [[] for _ in prompts]
        device = next(self.model.parameters()).device
        for batch_index, start in enumerate(range(0, len(jobs), sampling.batch_size)):
            batch = jobs[start : start + sampling.batch_size]
            rows = [prompts[p] for p, _ in batch]
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
                    cache_implementation=self.cache_implementation,
                    stopping_criteria=StoppingCriteriaList(
                        [_StopOnSequences(self.tokenizer, width, stop)]
                    ),
                )
            for (p, _), row in zip(batch, generated[:, width:].tolist(), strict=True):
                ids, text, reason = truncate(row, self.tokenizer, stop, self._eos_ids)
                out[p].append(Generation(text, list(prompts[p]), ids, reason))
            # The prompts whose last sample was in this batch are done.
            for p in dict.fromkeys(p for p, _ in batch):
                if len(out[p]) == sampling.n:
                    yield p, out[p]
