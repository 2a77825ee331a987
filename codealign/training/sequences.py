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
from codealign.training import fsdp


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
    keeping them (d log p / d logits = onehot - softmax). ``scale`` multiplies the logits
    (1 / sampling temperature). The second output, the entropy of each row's
    distribution, is computed from the same logits for logging and carries no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        block: int,
        scale: float,
        with_entropy: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.empty(len(hidden), dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        entropy = torch.zeros_like(out)
        for s in range(0, len(hidden), block):
            logits = (hidden[s : s + block] @ weight.T).float() * scale
            lse[s : s + block] = logits.logsumexp(-1)
            picked = logits.gather(-1, labels[s : s + block, None]).squeeze(-1)
            out[s : s + block] = picked - lse[s : s + block]
            if with_entropy:
                probs = (logits - lse[s : s + block, None]).exp()
                entropy[s : s + block] = lse[s : s + block] - (probs * logits).sum(-1)
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.block, ctx.scale = block, scale
        ctx.mark_non_differentiable(entropy)
        return out, entropy

    @staticmethod
    def backward(
        ctx: Any, grad: torch.Tensor, grad_entropy: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, labels, lse = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        for s in range(0, len(hidden), ctx.block):
            h, g = hidden[s : s + ctx.block], grad[s : s + ctx.block, None]
            probs = ((h @ weight.T).float() * ctx.scale - lse[s : s + ctx.block, None]).exp()
            d_logits = (-probs * g).scatter_add_(-1, labels[s : s + ctx.block, None], g)
            d_logits = d_logits * ctx.scale
            if grad_hidden is not None:
                grad_hidden[s : s + ctx.block] = (d_logits.to(weight.dtype) @ weight).to(h.dtype)
            if grad_weight is not None:
                grad_weight += d_logits.T @ h.float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


def chunked_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    budget_mb: int = 256,
    block: int | None = None,
    *,
    scale: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log softmax(scale · hidden @ weight.T)[label] per row of ``hidden`` [N, H], in
    float32, ``block`` rows at a time (default: about ``budget_mb`` of float32 logits),
    and the rows' entropies (zeros unless ``with_entropy``)."""
    block = block or max(1, (budget_mb * 2**20) // (4 * weight.shape[0]))
    out, entropy = _ChunkedTokenLogps.apply(  # type: ignore[no-untyped-call]
        hidden, weight, labels, block, scale, with_entropy
    )
    return out, entropy


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


@dataclass
class CompletionOutputs:
    """Per-token outputs over a batch's last ``tail`` columns ([B, tail], 0 off the mask)."""

    logps: torch.Tensor  # log π(token | context), float32, differentiable
    entropy: torch.Tensor | None  # of π at each position, no gradient
    hidden: torch.Tensor  # [B, tail, H]: the final hidden state before each token


def completion_outputs(
    model: Any, batch: Batch, *, temperature: float = 1.0, entropy: bool = False
) -> CompletionOutputs:
    """Token log-probs of every completion under softmax(logits / temperature), with the
    hidden states they came from (a value head reads them) and, optionally, entropies.

    Where the LM head is plain, only the completion tokens' hidden states go through it,
    in blocks (no logits tensor at all); otherwise the model's own forward computes the
    logits of the last ``tail + 1`` positions only (``logits_to_keep``). A model sharded
    by FSDP runs the pass inside its outer unit.
    """
    logps, ent, hidden = fsdp.run(model, _outputs, batch, temperature, entropy)
    return CompletionOutputs(logps, ent, hidden)


def _inputs(batch: Batch) -> dict[str, Any]:
    return {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "use_cache": False,
    }


def _outputs(
    model: Any, batch: Batch, temperature: float, entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    window = slice(-(batch.tail + 1), -1)  # position t predicts token t + 1
    plain = _plain_head(model)
    if plain is None:
        out = model(**_inputs(batch), logits_to_keep=batch.tail + 1, output_hidden_states=True)
        logits = out.logits[:, window] / temperature
        mask = batch.label_mask.to(logits.device)
        logps = token_logps(logits, batch.labels.to(logits.device)) * mask
        ent = None
        if entropy:
            with torch.no_grad():
                probs = logits.float().softmax(-1)
                ent = (logits.float().logsumexp(-1) - (probs * logits.float()).sum(-1)) * mask
        return logps, ent, out.hidden_states[-1][:, window]
    backbone, head = plain
    hidden = backbone(**_inputs(batch)).last_hidden_state[:, window]
    mask = batch.label_mask.bool()
    device = head.weight.device
    picked, picked_entropy = chunked_token_logps(
        hidden[mask].to(device=device, dtype=head.weight.dtype),  # k-bit prep: fp32 head
        head.weight,
        batch.labels[mask].to(device),
        scale=1.0 / temperature,
        with_entropy=entropy,
    )
    mask = mask.to(device)
    logps = torch.zeros(mask.shape, dtype=picked.dtype, device=device).masked_scatter(mask, picked)
    ent = None
    if entropy:
        ent = torch.zeros(mask.shape, dtype=picked.dtype, device=device)
        ent = ent.masked_scatter(mask, picked_entropy)
    return logps, ent, hidden


def sequence_logps(model: Any, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the completion's token log-probs per row, and its length in tokens."""
    out = completion_outputs(model, batch)
    return masked_sums(out.logps, batch.label_mask.to(out.logps.device))


def completion_hidden(model: Any, batch: Batch) -> torch.Tensor:
    """The final hidden state before each of the last ``tail`` tokens [B, tail, H], with
    no LM head at all (a value model's forward)."""
    return fsdp.run(model, _hidden, batch)  # type: ignore[no-any-return]


def _hidden(model: Any, batch: Batch) -> torch.Tensor:
    window = slice(-(batch.tail + 1), -1)
    plain = _plain_head(model)
    if plain is None:
        out = model(**_inputs(batch), logits_to_keep=1, output_hidden_states=True)
        return out.hidden_states[-1][:, window]  # type: ignore[no-any-return]
    return plain[0](**_inputs(batch)).last_hidden_state[:, window]  # type: ignore[no-any-return]
