"""Loop settings (the ``iterate`` section) and every section of a run together."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from codealign.settings.execution import ExecutionConfig
from codealign.settings.helptext import help_text
from codealign.settings.methods import Method, method_spec
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.scoring import ScoringConfig


def parse_ks(text: str, name: str = "k") -> list[int]:
    """Comma-separated k values ("1,10"), in the order given, each once."""
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"{name} values must be at least 1, got {text!r}")
    return list(dict.fromkeys(ks))


@dataclass
class IterateConfig:
    rounds: int = field(default=3, metadata=help_text("Rounds of sample → train."))
    method: Method = field(
        default="dpo",
        metadata=help_text(
            "How each round trains. Preference methods, with the settings of the train "
            "section: dpo (sigmoid loss on pairs), ipo (squared loss on average log-probs), "
            "kto (unpaired desirable/undesirable samples), orpo (reference-free SFT + odds "
            "ratio). Online RL on the samples' scores, with the settings of the ppo section: "
            "ppo (value head, GAE), grpo (group baseline), rloo (leave-one-out baseline)."
        ),
    )
    train_tasks: str = field(
        default="tiny-train",
        metadata=help_text("Tasks whose samples make the preference data (any task source)."),
    )
    eval_tasks: str = field(
        default="tiny-heldout",
        metadata=help_text("Held-out tasks for pass@k before and after every round."),
    )
    task_format: str | None = field(
        default=None, metadata=help_text("Format of both task sets (default: detected).")
    )
    prompts_per_round: int = field(
        default=0,
        metadata=help_text("Training prompts sampled each round (a fresh subset); 0: all."),
    )
    samples_per_prompt: int = field(
        default=8, metadata=help_text("Completions sampled per training prompt.")
    )
    eval_samples: int = field(
        default=10, metadata=help_text("Completions per held-out task for pass@k.")
    )
    eval_k: str = field(default="1,10", metadata=help_text("Comma-separated k for pass@k."))
    eval_temperature: float | None = field(
        default=None,
        metadata=help_text(
            "Sampling temperature of the held-out evaluation (0: greedy); default: "
            "sampling.temperature, as in training."
        ),
    )
    reference: Literal["auto", "initial", "previous"] = field(
        default="auto",
        metadata=help_text(
            "The reference policy of each round: the model before round 1, or the policy "
            "the round starts from (iterative DPO); auto: previous for the preference "
            "methods, initial for PPO/GRPO/RLOO (whose KL penalty is against it)."
        ),
    )
    eval_every: int = field(
        default=1,
        metadata=help_text(
            "Evaluate the held-out tasks after every N-th round (and always after the "
            "last): many small PPO rounds need not each pay an evaluation."
        ),
    )
    heldback_fraction: float = field(
        default=0.25,
        metadata=help_text(
            "Overoptimisation monitor: the share of a task's tests never used for rewards."
        ),
    )
    heldback_min_tests: int = field(
        default=4, metadata=help_text("Tasks with fewer tests hold none back.")
    )
    rm_refresh_every: int = field(
        default=0,
        metadata=help_text(
            "Refresh the readability model every N-th round (0: never), before the round is "
            "scored: trained on from the current one on pairs degraded from the policy's "
            "own correct samples and on the developers' labels (human_labels)."
        ),
    )
    rm_refresh_pairs: int = field(
        default=200,
        metadata=help_text("A refresh degrades the correct programs of this many tasks."),
    )
    human_labels: str | None = field(
        default=None,
        metadata=help_text("Developers' labels (codealign annotate) a refresh trains on."),
    )
    human_pairs: str | None = field(
        default=None, metadata=help_text("The proposed pairs those labels label.")
    )
    human_weight: float = field(
        default=2.0, metadata=help_text("How much a human label counts against a synthetic pair.")
    )

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.prompts_per_round < 0:
            raise ValueError("rounds and prompts_per_round must be >= 0")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 (pairs need two samples)")
        if self.eval_temperature is not None and self.eval_temperature < 0:
            raise ValueError("eval_temperature must be >= 0")
        if self.eval_samples < 1 or self.eval_every < 1:
            raise ValueError("eval_samples and eval_every must be >= 1")
        if not 0 <= self.heldback_fraction < 1:
            raise ValueError("heldback_fraction must be in [0, 1)")
        if self.rm_refresh_every < 0 or self.rm_refresh_pairs < 1 or self.human_weight <= 0:
            raise ValueError("rm_refresh_every >= 0, rm_refresh_pairs >= 1, human_weight > 0")
        if (self.human_labels is None) != (self.human_pairs is None):
            raise ValueError("human_labels and human_pairs go together")
        self.ks()  # a bad eval_k fails when the config is read, not after round 1

    def ks(self) -> list[int]:
        return sorted(parse_ks(self.eval_k, "eval_k"))


@dataclass
class RunConfig:
    """Every setting of a run, one dataclass per config-file section."""

    iterate: IterateConfig
    train: PreferenceConfig
    model: ModelConfig
    sampling: SamplingConfig
    execution: ExecutionConfig
    scoring: ScoringConfig
    ppo: PPOConfig = field(default_factory=PPOConfig)

    @property
    def rl(self) -> bool:
        """Online RL (PPO, GRPO, RLOO) rather than preference training."""
        return method_spec(self.iterate.method).rl

    def as_dict(self) -> dict[str, Any]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}
