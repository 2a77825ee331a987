"""The run directory, one contract: every path of a run, and the shape of what the report
reads. The loop writes through it and the report reads through it.

    DIR/run.json                 the settings the run was started with
    DIR/round-0/eval/            samples.jsonl, results.jsonl, metrics.json
    DIR/round-N/samples.jsonl    N per training prompt, with token ids
    DIR/round-N/results.jsonl    per-test verdicts (every test, held-back ones included)
    DIR/round-N/monitor.json     the overoptimisation monitor (reward vs held-back tests)
    DIR/round-N/readability/     the readability model refreshed in round N (if any)
    DIR/round-N/readability.json what that refresh trained on, accuracy before and after
    DIR/round-N/scored.jsonl     score and signals per sample (reward tests only)
    DIR/round-N/pairs.jsonl      preference pairs (KTO: labelled samples)
    DIR/round-N/pairs.json       pair statistics, signal report, overoptimisation monitor
    DIR/round-N/rollouts.jsonl   PPO/GRPO/RLOO instead of pairs: token ids and reward
    DIR/round-N/rewards.json     ... and their statistics, signal report and monitor
    DIR/round-N/adapter/         the policy after round N (LoRA/QLoRA adapter; PPO: with
                                 the value head and the KL coefficient)
    DIR/round-N/train.json       training metrics (marks the train stage finished)
    DIR/round-N/times.json       seconds per stage
    DIR/round-N/eval/            pass@k of the new policy on the held-out tasks
    DIR/report.json, report.md, report.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

from codealign.jsonl import write_json


class PreferenceSummary(TypedDict):
    """``pairs.json``: what a preference round's training data holds."""

    records: int  # pairs (KTO: labelled samples)
    pairs: int
    prompts: int
    prompts_with_pairs: int
    prompts_skipped: int
    skip_reasons: dict[str, int]
    signals: dict[str, Any]  # scoring.report.signal_report
    monitor: dict[str, Any]  # scoring.heldback.monitor


class RolloutSummary(TypedDict):
    """``rewards.json``: what an RL round's rollouts hold."""

    records: int  # rollouts
    prompts: int
    prompts_skipped: int
    skip_reasons: dict[str, int]
    zero_variance_groups: float  # prompts whose samples all scored the same
    zero_variance_pass_groups: float  # ... or all passed the same share of tests
    signals: dict[str, Any]
    monitor: dict[str, Any]


class TrainMetrics(TypedDict, total=False):
    """``train.json``: the keys of a recipe's metrics the report reads (it keeps more)."""

    # DPO, IPO, KTO, ORPO
    loss_first: float
    loss_last: float
    reward_accuracy: float
    reward_margin: float
    chosen_reward: float
    rejected_reward: float
    chosen_logp_per_token_first: float
    chosen_logp_per_token_last: float
    kl: float
    steps: int
    seconds: float
    # PPO, GRPO, RLOO
    reward_mean: float
    reward_std: float
    kl_coef: float
    entropy: float
    response_length: float
    zero_variance_groups: float
    policy_loss_last: float
    value_loss_first: float
    value_loss_last: float
    explained_variance_last: float
    clip_fraction_last: float
    approx_kl_last: float
    # a round with no training data
    skipped: str
    records: int


#: What the report copies from train.json into each round's row, in this order.
REPORTED_TRAIN_KEYS = tuple(TrainMetrics.__annotations__)[:-1]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None where it is missing or unreadable (not finished)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class EvalPaths:
    """A held-out evaluation: ``round-N/eval/``."""

    dir: Path

    @property
    def samples(self) -> Path:
        return self.dir / "samples.jsonl"

    @property
    def results(self) -> Path:
        return self.dir / "results.jsonl"

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.json"


@dataclass(frozen=True)
class RoundPaths:
    """Every file of one round."""

    dir: Path

    @property
    def samples(self) -> Path:
        return self.dir / "samples.jsonl"

    @property
    def results(self) -> Path:
        return self.dir / "results.jsonl"

    @property
    def readability(self) -> Path:
        """The readability model refreshed in this round (iterate.rm_refresh_every)."""
        return self.dir / "readability"

    @property
    def refresh(self) -> Path:
        """What the refresh trained on and its accuracy on held-out human labels."""
        return self.dir / "readability.json"

    @property
    def monitor(self) -> Path:
        return self.dir / "monitor.json"

    @property
    def scored(self) -> Path:
        return self.dir / "scored.jsonl"

    @property
    def pairs(self) -> Path:
        return self.dir / "pairs.jsonl"

    @property
    def pairs_summary(self) -> Path:
        return self.dir / "pairs.json"

    @property
    def rollouts(self) -> Path:
        return self.dir / "rollouts.jsonl"

    @property
    def rollouts_summary(self) -> Path:
        return self.dir / "rewards.json"

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def train(self) -> Path:
        return self.dir / "train.json"

    @property
    def times(self) -> Path:
        return self.dir / "times.json"

    @property
    def eval(self) -> EvalPaths:
        return EvalPaths(self.dir / "eval")

    def has_adapter(self) -> bool:
        return (self.adapter / "adapter_config.json").exists()

    # -- what the report reads ----------------------------------------------------------

    def summary(self) -> PreferenceSummary | RolloutSummary | None:
        """The training data's summary: pairs.json, or rewards.json for RL rounds."""
        data = read_json(self.pairs_summary) or read_json(self.rollouts_summary)
        return cast("PreferenceSummary | RolloutSummary | None", data)

    def train_metrics(self) -> TrainMetrics | None:
        return cast("TrainMetrics | None", read_json(self.train))

    def eval_metrics(self) -> dict[str, Any] | None:
        """pass@k (``pass@1``, ...), ``mean_pass_rate`` and the status counts."""
        return read_json(self.eval.metrics)

    def times_taken(self) -> dict[str, float]:
        return cast("dict[str, float]", read_json(self.times) or {})

    def add_time(self, stage: str, seconds: float) -> None:
        times = self.times_taken()
        times[stage] = round(times.get(stage, 0.0) + seconds, 3)
        write_json(self.times, times)


@dataclass(frozen=True)
class RunLayout:
    """A run directory."""

    dir: Path

    @property
    def settings(self) -> Path:
        return self.dir / "run.json"

    @property
    def report_json(self) -> Path:
        return self.dir / "report.json"

    @property
    def report_md(self) -> Path:
        return self.dir / "report.md"

    @property
    def report_png(self) -> Path:
        return self.dir / "report.png"

    def round(self, r: int) -> RoundPaths:
        return RoundPaths(self.dir / f"round-{r}")
