"""The default readability model: its recipe, its cache key, and
``ensure_default_readability_model``, which trains it from the tiny backbone on the
built-in pairs the first time it is needed and reuses the cached model after that.

The key hashes everything that determines the model (the recipe, the pair generator's
``DATA_VERSION``, the tiny backbone's key, ``DEFAULT_VERSION``), so a change to any of them
trains a new model instead of reusing a stale one. Light: torch loads only to train.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from codealign.cache import BuildClock, ensure_built, model_dir, say

#: Bump when the default model's recipe changes.
DEFAULT_VERSION = 2


def default_config() -> Any:
    """The default model's training recipe (a ``RewardModelConfig``)."""
    from codealign.settings.reward_model import RewardModelConfig

    # 15% of the pairs are held out as whole families (tiny templates, HumanEval tasks), so
    # the model's metrics say how it does on code it never saw.
    return RewardModelConfig(
        base="tiny",
        finetune="full",
        device="cpu",
        max_length=256,
        epochs=2,
        batch_size=16,
        lr=3e-4,
        eval_fraction=0.15,
        seed=0,
    )


def default_model_key() -> str:
    from codealign.models.tiny import TinyRecipe
    from codealign.readability.pairs import DATA_VERSION

    blob = json.dumps(
        {
            "config": asdict(default_config()),
            "data": DATA_VERSION,
            "tiny": TinyRecipe().key(),
            "version": DEFAULT_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: Wall time of the build on an idle 2-core x86 CPU (measured), for the line announcing
#: it; the progress bars' ETAs are the ones for the machine at hand.
_REFERENCE_BUILD = "about 3 min on 2 CPU cores"


def ensure_default_readability_model(*, log: Any = say) -> Path:
    """The default readability model's directory, trained (once, then cached) from the
    tiny backbone on the built-in readability pairs (saying so to ``log``, which ``None``
    silences, progress bars included)."""
    target = model_dir(f"readability-{default_model_key()}")
    tell = log or (lambda _: None)

    def build(out: Path) -> None:
        from codealign.readability.pairs import builtin_pairs, pair_records
        from codealign.training.reward_model import train_reward_model

        tell(
            "codealign: first run: training the default readability model (checking about "
            "2,300 programs in the sandbox, then about 170 training steps and a calibration "
            f"pass; {_REFERENCE_BUILD}; the bars show the ETA here). Cached in {target}, "
            "so later runs skip this."
        )
        clock = BuildClock()
        with clock.phase("pairs"):
            pairs, counts = builtin_pairs(progress=log is not None)
            records = pair_records(pairs)
        with clock.phase("training"):
            metrics = train_reward_model(records, default_config(), out, progress=log is not None)
            (out / "pair_counts.json").write_text(json.dumps(counts, indent=2) + "\n")
        tell(
            f"codealign: readability model trained in {clock.summary()}; held-out accuracy "
            f"{metrics.get('heldout_accuracy', float('nan')):.3f}"
        )

    return ensure_built(target, "reward_model.json", build, log=log)
