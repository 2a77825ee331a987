"""The embedded default model, ``tiny``: built locally on first use, never downloaded.

A byte-level BPE tokenizer (digits split one by one, so the model copies constants from
the docstring instead of memorising them) and a 4-layer Llama are trained from scratch,
then warm-started by supervised fine-tuning on the built-in task family (codealign.tasks
.tiny), whose data is deliberately imperfect so that alignment has something to fix. The
result is cached under the user's cache directory (codealign.cache), keyed by a hash of
the recipe: a changed recipe builds a new model, the same recipe reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from codealign.cache import BuildClock, ensure_built, model_dir, say

#: Bump when anything below changes what gets built.
BUILD_VERSION = 1


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the tiny model; its hash names the cache entry."""

    seed: int = 0
    vocab_size: int = 512
    hidden_size: int = 256
    intermediate_size: int = 512
    layers: int = 4
    heads: int = 4
    max_positions: int = 256
    sft_examples: int = 4000
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 30

    def key(self) -> str:
        from codealign.tasks.tiny import RECIPE_VERSION

        blob = json.dumps(
            {"recipe": asdict(self), "build": BUILD_VERSION, "tasks": RECIPE_VERSION},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


EOS = "<|endoftext|>"


#: Wall time of the default recipe's build on an idle 2-core x86 CPU (measured), for the
#: line announcing it; the progress bar's ETA is the one for the machine at hand.
_REFERENCE_BUILD = "about 2 min on 2 CPU cores"


def _quiet(_: str) -> None:
    pass


def ensure_tiny_model(recipe: TinyRecipe = TinyRecipe(), *, log: Any = say) -> Path:
    """The tiny model's directory, building it first if this recipe has not been built
    (saying so to ``log``, which ``None`` silences, progress bars included)."""
    target = model_dir(f"tiny-{recipe.key()}")
    tell = log or _quiet

    def build(out: Path) -> None:
        steps = recipe.epochs * math.ceil(recipe.sft_examples / recipe.batch_size)
        took = f"{_REFERENCE_BUILD}; " if recipe == TinyRecipe() else ""
        tell(
            f"codealign: first run: building the tiny model ({steps} SFT steps; {took}the "
            f"bar shows the ETA here). Cached in {target}, so later runs skip this."
        )
        clock = BuildClock()
        build_tiny_model(out, recipe, log=log, clock=clock)
        tell(f"codealign: tiny model built in {clock.summary()}")

    return ensure_built(target, "config.json", build, log=log)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE whose pre-tokenizer splits every digit on its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=EOS, padding_side="left"
    )


def tiny_llama(vocab_size: int, recipe: TinyRecipe, eos_id: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
    )
    return LlamaForCausalLM(config)


def sft_batches(
    rows: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int, rng: random.Random
) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches where only the completion (and its EOS) carries loss.

    Prompt and completion ids are tokenized separately, exactly as generation sees them:
    joining the texts first would put a boundary token in training that generation never
    starts from.
    """
    order = list(range(len(rows)))
    rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start : start + batch_size]]
        width = max(len(p) + len(c) for p, c in chunk)
        ids, labels, mask = [], [], []
        for p, c in chunk:
            seq = p + c
            pad = width - len(seq)
            ids.append(seq + [pad_id] * pad)
            labels.append([-100] * len(p) + c + [-100] * pad)
            mask.append([1] * len(seq) + [0] * pad)
        yield {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }


def build_tiny_model(
    out: Path,
    recipe: TinyRecipe = TinyRecipe(),
    *,
    log: Any = print,
    clock: BuildClock | None = None,
) -> Path:
    """Train tokenizer and model from scratch, then SFT; saves both to ``out``.

    ``clock`` (if given) times the phases, for the line closing the build."""
    from tqdm import tqdm

    from codealign.tasks.tiny import sft_examples

    clock = clock or BuildClock()
    random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    with clock.phase("data"):
        examples = sft_examples(recipe.sft_examples, seed=recipe.seed)
    with clock.phase("tokenizer"):
        texts = [e.prompt + e.completion for e in examples]
        tokenizer = train_tokenizer(texts, recipe.vocab_size)
        eos_id = tokenizer.eos_token_id
        model = tiny_llama(len(tokenizer), recipe, eos_id)
        rows = []
        for e in examples:
            prompt_ids = tokenizer(e.prompt, add_special_tokens=False)["input_ids"]
            completion_ids = tokenizer(e.completion, add_special_tokens=False)["input_ids"]
            if len(prompt_ids) + len(completion_ids) < recipe.max_positions:
                rows.append((prompt_ids, [*completion_ids, eos_id]))
    steps = recipe.epochs * math.ceil(len(rows) / recipe.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / recipe.warmup_steps)
            * 0.5
            * (1 + math.cos(math.pi * min(1.0, s / steps)))
        ),
    )
    rng = random.Random(recipe.seed)
    model.train()
    bar = tqdm(
        total=steps, desc="tiny model SFT", unit="step", dynamic_ncols=True, disable=log is None
    )
    with bar, clock.phase("SFT"):
        for _ in range(recipe.epochs):
            for batch in sft_batches(rows, recipe.batch_size, eos_id, rng):
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    with clock.phase("saving"):
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "codealign-recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
    return out
