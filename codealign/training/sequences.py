"""Token-id sequences for preference training: batching and sequence log-probs.

Prompt and completion ids stay separate from sampling to the loss: re-tokenising
prompt + completion as one string can merge tokens across the boundary, so the model
would be trained on sequences it never produced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from codealign.errors import InputError


@dataclass(frozen=True)
class TokenSequence:
    """One (prompt, completion) pair of token-id lists."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    def clipped(self, max_length: int) -> TokenSequence:
        """At most ``max_length`` tokens: the start of the prompt goes first, and at least
        one prompt token stays (the first completion token is predicted from it)."""
        room = max_length - len(self.completion_ids)
        if room >= len(self.prompt_ids):
            return self
        if room < 1:
            return TokenSequence(self.prompt_ids[-1:], self.completion_ids[: max_length - 1])
        return TokenSequence(self.prompt_ids[-room:], self.completion_ids)


def make_sequence(
    prompt_ids: Sequence[int], completion_ids: Sequence[int], where: str
) -> TokenSequence:
    if not prompt_ids:
        raise InputError(f"{where}: empty prompt (the first completion token needs a context)")
    return TokenSequence(tuple(int(i) for i in prompt_ids), tuple(int(i) for i in completion_ids))


@dataclass
class Batch:
    """Left-padded rows whose completions all end at the last column.

    Every completion is a suffix of its row, so only the last ``tail + 1`` positions need
    logits (``logits_to_keep``): the prompt's logits are never materialised.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor  # the last ``tail`` tokens of each row
    label_mask: torch.Tensor  # 1 where that token belongs to the completion
    tail: int

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.position_ids.to(device),
            self.labels.to(device),
            self.label_mask.to(device),
            self.tail,
        )


def collate(sequences: Sequence[TokenSequence], pad_id: int, max_length: int) -> Batch:
    rows = [s.clipped(max_length) for s in sequences]
    width = max(len(r.prompt_ids) + len(r.completion_ids) for r in rows)
    tail = max(max(len(r.completion_ids) for r in rows), 1)
    ids, mask, labels_mask = [], [], []
    for r in rows:
        tokens = list(r.prompt_ids + r.completion_ids)
        pad = width - len(tokens)
        ids.append([pad_id] * pad + tokens)
        mask.append([0] * pad + [1] * len(tokens))
        n = len(r.completion_ids)
        labels_mask.append([0] * (tail - n) + [1] * n)
    input_ids = torch.tensor(ids)
    attention_mask = torch.tensor(mask)
    # Positions count real tokens only, as generation with left padding does.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return Batch(
        input_ids,
        attention_mask,
        position_ids,
        input_ids[:, width - tail :],
        torch.tensor(labels_mask),
        tail,
    )


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) at each position, from logits [B, T, V] and labels [B, T].

    Half-precision logits are upcast one row at a time, so the float32 copy never spans
    the whole batch.
    """
    if logits.dtype not in (torch.float16, torch.bfloat16):
        return logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
    rows = []
    for row_logits, row_labels in zip(logits, labels, strict=True):
        row = row_logits.float()
        rows.append(row.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1) - row.logsumexp(-1))
    return torch.stack(rows)


def masked_sums(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sum of ``values`` where ``mask`` is 1, and the number of such positions."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1), mask.sum(-1)


class _ChunkedTokenLogps(torch.autograd.Function):
    """log p(label) through the LM head, a block of rows at a time.

    Forward and backward each hold one block's logits, so a 150k-token vocabulary never
    costs a (tokens x vocab) tensor; backward recomputes the block's logits instead of
    keeping them (d log p / d logits = onehot - softmax).
    """

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, block: int
    ) -> torch.Tensor:
        out = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        for s in range(0, len(hidden), block):
            logits = (hidden[s : s + block] @ weight.T).float()
            lse[s : s + block] = logits.logsumexp(-1)
            picked = logits.gather(-1, labels[s : s + block, None]).squeeze(-1)
            out[s : s + block] = picked - lse[s : s + block]
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.block = block
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, labels, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        for s in range(0, len(hidden), ctx.block):
            h, g = hidden[s : s + ctx.block], grad[s : s + ctx.block, None]
            probs = ((h @ weight.T).float() - lse[s : s + ctx.block, None]).exp()
            d_logits = (-probs * g).scatter_add_(-1, labels[s : s + ctx.block, None], g)
            if grad_hidden is not None:
                grad_hidden[s : s + ctx.block] = (d_logits.to(weight.dtype) @ weight).to(h.dtype)
            if grad_weight is not None:
                grad_weight += d_logits.T @ h.float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    budget_mb: int = 256,
    block: int | None = None,
) -> torch.Tensor:
    """log softmax(hidden @ weight.T)[label] per row of ``hidden`` [N, H], in float32,
    ``block`` rows at a time (default: about ``budget_mb`` of float32 logits)."""
    block = block or max(1, (budget_mb * 2**20) // (4 * weight.shape[0]))
    out: torch.Tensor = _ChunkedTokenLogps.apply(hidden, weight, labels, block)  # type: ignore[no-untyped-call]
    return out


#: Config fields that rescale or cap logits after the LM head; such models take the plain
#: path, which runs the model's own head code.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def _plain_head(model: Any) -> tuple[Any, torch.nn.Linear] | None:
    """(backbone, LM head) when the head is a plain bias-free linear layer applied to the
    backbone's last hidden state, else None."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config: Any = getattr(base, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    if any(getattr(text_config, name, None) not in (None, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    head: Any = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    backbone = getattr(base, "base_model", None)
    if type(head) is not torch.nn.Linear or getattr(head, "bias", None) is not None:
        return None
    if backbone is None or backbone is base:
        return None
    return backbone, head


def sequence_logps(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the completion's token log-probs per row, and its length in tokens.

    Where the LM head is plain, only the completion tokens' hidden states go through it,
    in blocks (no logits tensor at all); otherwise the model's own forward computes the
    logits of the last ``tail + 1`` positions only (``logits_to_keep``).
    """
    inputs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "use_cache": False,
    }
    plain = _plain_head(model)
    if plain is None:
        logits = model(**inputs, logits_to_keep=batch.tail + 1).logits
        logits = logits[:, -(batch.tail + 1) : -1]  # position t predicts token t + 1
        return masked_sums(token_logps(logits, batch.labels), batch.label_mask)
    backbone, head = plain
    hidden = backbone(**inputs).last_hidden_state[:, -(batch.tail + 1) : -1]
    mask = batch.label_mask.bool()
    picked = chunked_token_logps(
        hidden[mask].to(head.weight.device), head.weight, batch.labels[mask].to(head.weight.device)
    )
    per_token = torch.zeros(mask.shape, dtype=picked.dtype, device=picked.device)
    per_token = per_token.masked_scatter(mask.to(picked.device), picked)
    return masked_sums(per_token, batch.label_mask.to(picked.device))
