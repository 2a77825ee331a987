"""A reward model: a causal-LM backbone with a scalar head on the last non-padding token.

The backbone is the kind of model codealign trains (the tiny default offline, a real
coder model with LoRA or QLoRA on a GPU). Prompt and response are tokenized separately
and joined, as everywhere in codealign, and an end-of-sequence token closes the response
so the head always reads the same kind of position.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from codealign.batching import length_groups
from codealign.errors import InputError
from codealign.models.loading import add_lora, load_model, load_tokenizer, model_path
from codealign.settings.model import ModelConfig

HEAD_FILE = "reward_head.pt"
META_FILE = "reward_model.json"


@dataclass
class RewardMeta:
    """What a saved reward model needs to be loaded and calibrated."""

    base: str  # the backbone: a directory, a hub name or "tiny"
    finetune: str  # "full" (weights saved whole) or "lora" (an adapter on the base)
    max_length: int
    #: Calibration: score = σ(reward - center). ``center`` is the median reward of held-out
    #: responses, so 0.5 means "as readable as a typical response"; under the Bradley-Terry
    #: model σ(r - center) is the chance of being preferred to one.
    center: float = 0.0
    quantization: str = "none"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last non-padding token, for left or right padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask * positions).argmax(dim=1)


class RewardModel(nn.Module):
    def __init__(self, backbone: Any, tokenizer: Any, meta: RewardMeta) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.meta = meta
        hidden = backbone.config.hidden_size if hasattr(backbone, "config") else None
        if hidden is None:
            raise InputError("the reward model backbone has no hidden size")
        self.head = nn.Linear(hidden, 1)
        nn.init.normal_(self.head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        device = next(backbone.parameters()).device
        self.head.to(device=device, dtype=torch.float32)

    @property
    def device(self) -> torch.device:
        return torch.device(next(self.backbone.parameters()).device)

    def encode(self, prompt: str, response: str) -> list[int]:
        """Token ids of one (prompt, response): the response is kept whole where possible;
        a too-long input loses the start of its prompt first, then the end of the response."""
        tok = self.tokenizer
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        response_ids = tok(response, add_special_tokens=False)["input_ids"]
        response_ids = [*response_ids[: self.meta.max_length - 1], tok.eos_token_id]
        room = self.meta.max_length - len(response_ids)
        prompt_ids = prompt_ids[len(prompt_ids) - room :] if room > 0 else []
        return [*prompt_ids, *response_ids]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # The head reads hidden states only: the LM head runs on one position, not all of
        # them (with a 150k vocabulary its logits would be the largest tensor in the pass).
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=True,
            logits_to_keep=1,
        )
        hidden = out.hidden_states[-1]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        last = hidden[rows, last_token_index(attention_mask)]
        rewards: torch.Tensor = self.head(last.float()).squeeze(-1)
        return rewards

    def rewards(self, sequences: Sequence[list[int]]) -> torch.Tensor:
        """Rewards of already-encoded sequences, in their order. Sequences of similar length
        run together (``length_groups``), each group right-padded to its longest: the head
        reads the last real token, so neither padding nor grouping changes a score."""
        groups = length_groups([len(s) for s in sequences])
        parts = [self.padded_rewards([sequences[i] for i in group]) for group in groups]
        position = torch.empty(len(sequences), dtype=torch.long, device=self.device)
        position[[i for group in groups for i in group]] = torch.arange(
            len(sequences), device=self.device
        )
        return torch.cat(parts)[position]

    def padded_rewards(self, sequences: Sequence[list[int]]) -> torch.Tensor:
        """Rewards of ``sequences`` in one pass, right-padded to the longest."""
        pad = self.tokenizer.pad_token_id
        width = max(len(s) for s in sequences)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=self.device)
        mask = torch.tensor(
            [[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=self.device
        )
        rewards: torch.Tensor = self(ids, mask)
        return rewards

    @torch.no_grad()
    def score(
        self, prompts: Sequence[str], responses: Sequence[str], batch_size: int = 32
    ) -> list[float]:
        """Calibrated scores in [0, 1], batched. Eval mode, no gradients."""
        was_training = self.training
        self.eval()
        out: list[float] = []
        encoded = [self.encode(p, r) for p, r in zip(prompts, responses, strict=True)]
        for start in range(0, len(encoded), batch_size):
            rewards = self.rewards(encoded[start : start + batch_size])
            out += torch.sigmoid(rewards - self.meta.center).tolist()
        self.train(was_training)
        return out

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if self.meta.finetune == "lora":
            self.backbone.save_pretrained(out / "adapter")
        else:
            self.backbone.save_pretrained(out / "backbone")
            self.tokenizer.save_pretrained(out / "backbone")
        torch.save(self.head.state_dict(), out / HEAD_FILE)
        (out / META_FILE).write_text(json.dumps(asdict(self.meta), indent=2) + "\n")
        return out

    @classmethod
    def create(cls, base: ModelConfig, *, finetune: str, max_length: int) -> RewardModel:
        """A fresh reward model on ``base`` (full fine-tuning, or LoRA/QLoRA adapters)."""
        if finetune not in ("full", "lora"):
            raise InputError(f"finetune must be 'full' or 'lora', got {finetune!r}")
        backbone = load_model(base, for_training=True)
        if finetune == "lora":
            backbone = add_lora(backbone, base)
        tokenizer = load_tokenizer(model_path(base), trust_remote_code=base.trust_remote_code)
        meta = RewardMeta(
            base=base.name, finetune=finetune, max_length=max_length, quantization=base.quantization
        )
        return cls(backbone, tokenizer, meta)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto") -> RewardModel:
        path = Path(path)
        if not (path / META_FILE).exists():
            raise InputError(f"no reward model ({META_FILE}) in {path}")
        stored = json.loads((path / META_FILE).read_text())
        stored.pop("scale", None)  # written by earlier versions, always 1
        meta = RewardMeta(**stored)
        if meta.finetune == "lora":
            base = ModelConfig(
                name=meta.base,
                device=device,
                adapter=str(path / "adapter"),
                quantization=meta.quantization,  # type: ignore[arg-type]
            )
            backbone = load_model(base)
            tokenizer = load_tokenizer(model_path(base))
        else:
            base = ModelConfig(name=str(path / "backbone"), device=device)
            backbone = load_model(base)
            tokenizer = load_tokenizer(str(path / "backbone"))
        model = cls(backbone, tokenizer, meta)
        model.head.load_state_dict(torch.load(path / HEAD_FILE, map_location=model.device))
        model.eval()
        return model
