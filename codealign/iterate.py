"""The round loop: sample → execute → score → pairs → train → evaluate, R times.

Everything a round makes is a file in the run directory, written atomically, and a stage
whose output exists is finished: rerunning the same command after a crash (even
``kill -9``) continues from the first missing file. Round 0 is the model before training.

    DIR/run.json                 the settings the run was started with
    DIR/round-0/eval/            samples.jsonl, results.jsonl, metrics.json
    DIR/round-N/samples.jsonl    N per training prompt, with token ids
    DIR/round-N/results.jsonl    per-test verdicts (every test, held-back ones included)
    DIR/round-N/scored.jsonl     score and signals per sample (reward tests only)
    DIR/round-N/pairs.jsonl      preference pairs (KTO: labelled samples)
    DIR/round-N/pairs.json       pair statistics, signal report, overoptimisation monitor
    DIR/round-N/rollouts.jsonl   PPO/GRPO/RLOO instead of pairs: token ids and reward
    DIR/round-N/rewards.json     ... and their statistics, signal report and monitor
    DIR/round-N/adapter/         the policy after round N (LoRA/QLoRA adapter; PPO: with
                                 the value head and the KL coefficient)
    DIR/round-N/train.json       training metrics (marks the train stage finished)
    DIR/round-N/eval/            pass@k of the new policy on the held-out tasks
    DIR/report.json, report.md, report.png
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codealign.errors import InputError
from codealign.execution.config import ExecutionConfig
from codealign.helptext import help_text
from codealign.jsonl import read_jsonl, write_json, write_jsonl
from codealign.models.config import ModelConfig, SamplingConfig
from codealign.samples import load_samples
from codealign.scoring.combine import ScoringConfig
from codealign.tasks import Task, load_tasks
from codealign.training.dpo import RL_METHODS, PreferenceConfig
from codealign.training.ppo import PPOConfig

STAGES = ("sample", "execute", "score", "pairs", "train", "evaluate")
RL_STAGES = ("sample", "execute", "score", "rewards", "train", "evaluate")


@dataclass
class IterateConfig:
    rounds: int = field(default=3, metadata=help_text("Rounds of sample → train."))
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

    def __post_init__(self) -> None:
        if self.rounds < 0 or self.prompts_per_round < 0:
            raise ValueError("rounds and prompts_per_round must be >= 0")
        if self.samples_per_prompt < 2:
            raise ValueError("samples_per_prompt must be >= 2 (pairs need two samples)")
        if self.eval_samples < 1 or self.eval_every < 1:
            raise ValueError("eval_samples and eval_every must be >= 1")
        if not 0 <= self.heldback_fraction < 1:
            raise ValueError("heldback_fraction must be in [0, 1)")
        self.ks()  # a bad eval_k fails when the config is read, not after round 1

    def ks(self) -> list[int]:
        try:
            ks = sorted({int(k) for k in self.eval_k.split(",") if k.strip()})
        except ValueError:
            raise ValueError(
                f"eval_k must be comma-separated integers, got {self.eval_k!r}"
            ) from None
        if not ks or ks[0] < 1:
            raise ValueError(f"eval_k values must be >= 1, got {self.eval_k!r}")
        return ks


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
        return self.train.method in RL_METHODS

    def as_dict(self) -> dict[str, Any]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _settings_that_matter(config: RunConfig) -> dict[str, Any]:
    """What must not change when a run resumes (more rounds and more workers may)."""
    d: dict[str, Any] = json.loads(json.dumps(config.as_dict()))  # as run.json stores it
    d["iterate"].pop("rounds")
    d["iterate"].pop("eval_every")
    d["execution"].pop("workers")
    d["execution"].pop("sandbox")
    d["model"].pop("device")
    if config.rl:  # only the settings of the method's own trainer
        d["train"] = {"method": config.train.method}
    else:
        d.pop("ppo")
    return d


def _check_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Record the settings of a new run; refuse to resume one made with other settings."""
    path = run_dir / "run.json"
    wanted = _settings_that_matter(config)
    if path.exists():
        try:
            stored = json.loads(path.read_text("utf-8"))["settings"]
        except (ValueError, KeyError) as exc:
            raise InputError(f"not a codealign run file ({exc})", path=path) from None
        # A setting newer than the run (an upgrade added it) counts as its default.
        defaults = RunConfig(
            IterateConfig(),
            PreferenceConfig(),
            ModelConfig(),
            SamplingConfig(),
            ExecutionConfig(),
            ScoringConfig(),
        ).as_dict()
        defaults = json.loads(json.dumps(defaults))
        changed = [
            f"{section}.{key}"
            for section in wanted
            for key in wanted[section]
            if stored.get(section, {}).get(key, defaults[section][key]) != wanted[section][key]
        ]
        if changed:
            raise InputError(
                f"this run was started with other settings ({', '.join(changed)}); resume "
                "it with the same config, or give another --run-dir",
                path=path,
            )
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {"settings": wanted, "config": config.as_dict()})


class Run:
    """One run directory and the stages of its rounds."""

    def __init__(
        self,
        run_dir: str | Path,
        config: RunConfig,
        *,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.dir = Path(run_dir)
        self.config = config
        self.progress = progress
        self.log = log
        it = config.iterate
        train = load_tasks(it.train_tasks, format=it.task_format)
        held = load_tasks(it.eval_tasks, format=it.task_format)
        self.train_tasks = {t.task_id: t for t in train}
        self.eval_tasks = {t.task_id: t for t in held}
        self.stages = RL_STAGES if config.rl else STAGES
        if config.rl and it.reference == "previous":
            raise InputError(
                "iterate.reference=previous would make the KL penalty of "
                f"{config.train.method} zero (the reference would be the policy that sampled "
                "the rollouts); use initial (or auto)"
            )
        if config.rl and config.sampling.temperature == 0:
            raise InputError(
                f"{config.train.method} learns from sampled rollouts: greedy decoding "
                "(sampling.temperature=0) gives the same completion every time"
            )
        overlap = set(self.train_tasks) & set(self.eval_tasks)
        if overlap:
            raise InputError(
                f"{len(overlap)} tasks are in both the training and the held-out set "
                f"(e.g. {sorted(overlap)[0]!r}): held-out pass@k would be meaningless"
            )

    # -- paths and policy ---------------------------------------------------------------

    def round_dir(self, r: int) -> Path:
        return self.dir / f"round-{r}"

    def adapter_after(self, r: int) -> str | None:
        """The policy's adapter after round ``r`` (round 0: the configured one)."""
        for k in range(r, 0, -1):
            if (self.round_dir(k) / "adapter" / "adapter_config.json").exists():
                return str(self.round_dir(k) / "adapter")
        return self.config.model.adapter

    def policy(self, r: int) -> ModelConfig:
        return dataclasses.replace(self.config.model, adapter=self.adapter_after(r))

    def _stage(self, r: int, name: str, rounds: int) -> None:
        where = "before training" if r == 0 else f"round {r}/{rounds}"
        self.log(f"── {where} · {name}")

    def _time(self, r: int, stage: str, seconds: float) -> None:
        path = self.round_dir(r) / "times.json"
        times = json.loads(path.read_text("utf-8")) if path.exists() else {}
        times[stage] = round(times.get(stage, 0.0) + seconds, 3)
        write_json(path, times)

    # -- stages -------------------------------------------------------------------------

    def _sample(
        self, out: Path, tasks: Sequence[Task], adapter_round: int, n: int, seed: int
    ) -> None:
        from codealign.models.sampling import sample_with_model

        sampling = dataclasses.replace(self.config.sampling, n=n, seed=seed)
        records = sample_with_model(
            tasks, self.policy(adapter_round), sampling, progress=self.progress
        )
        write_jsonl(out, records)

    def _execute(self, samples_path: Path, out: Path, tasks: dict[str, Task]) -> None:
        from codealign.execution import execute_samples, write_results

        samples = load_samples(samples_path, tasks)
        checkpoint = out.with_name(out.name + ".partial")
        results = execute_samples(
            tasks, samples, self.config.execution, checkpoint=checkpoint, progress=self.progress
        )
        write_results(out, samples, results, checkpoint)

    def _results(self, path: Path) -> list[Any]:
        from codealign.execution import ExecResult

        return [ExecResult.from_dict(record) for _, record in read_jsonl(path)]

    def training_prompts(self, r: int) -> list[Task]:
        tasks = list(self.train_tasks.values())
        k = self.config.iterate.prompts_per_round
        if k and k < len(tasks):
            tasks = random.Random(f"{self.config.sampling.seed}/{r}").sample(tasks, k)
        return tasks

    def score(self, r: int) -> None:
        from codealign.scoring.base import Item
        from codealign.scoring.combine import scored_rows
        from codealign.scoring.heldback import heldback_tests, monitor, reward_view

        d = self.round_dir(r)
        samples = load_samples(d / "samples.jsonl", self.train_tasks)
        results = self._results(d / "results.jsonl")
        it = self.config.iterate
        held = heldback_tests(
            self.train_tasks, results, it.heldback_fraction, it.heldback_min_tests
        )
        items = [
            Item(
                self.train_tasks[s.task_id],
                s,
                reward_view(res, held),
                s.program(self.train_tasks[s.task_id]),
            )
            for s, res in zip(samples, results, strict=True)
        ]
        write_json(d / "monitor.json", monitor(results, held))
        write_jsonl(d / "scored.jsonl", scored_rows(items, self.config.scoring))

    def pairs(self, r: int) -> None:
        from codealign.scoring.pairs import kto_labels, make_pairs
        from codealign.scoring.report import signal_report

        d = self.round_dir(r)
        rows = [record for _, record in read_jsonl(d / "scored.jsonl")]
        scoring = self.config.scoring
        made, dropped = make_pairs(rows, scoring)
        records = kto_labels(rows, scoring) if self.config.train.method == "kto" else made
        if self.config.train.method == "kto":
            # Prompts whose samples all share one label teach KTO nothing about the task.
            labels: dict[str, set[bool]] = {}
            for rec in records:
                labels.setdefault(rec["task_id"], set()).add(rec["label"])
            records = [rec for rec in records if len(labels[rec["task_id"]]) == 2]
        summary = {
            "records": len(records),
            "pairs": len(made),
            "prompts": len({row["task_id"] for row in rows}),
            "prompts_with_pairs": len({p["task_id"] for p in made}),
            "prompts_skipped": sum(dropped.values()),
            "skip_reasons": dict(dropped.most_common()),
            "signals": signal_report(rows, scoring),
            "monitor": json.loads((d / "monitor.json").read_text("utf-8")),
        }
        write_json(d / "pairs.json", summary)
        write_jsonl(d / "pairs.jsonl", records)

    def rewards(self, r: int) -> None:
        """PPO/GRPO/RLOO: every sample is a rollout, its score the reward."""
        import torch

        from codealign.scoring.report import signal_report
        from codealign.training.losses import zero_variance_fraction

        d = self.round_dir(r)
        rows = [record for _, record in read_jsonl(d / "scored.jsonl")]
        keep = ("task_id", "sample_index", "prompt_ids", "completion_ids", "finish_reason")
        rollouts = [
            {k: row[k] for k in keep if k in row}
            | {"reward": row["score"], "pass_rate": row["pass_rate"]}
            for row in rows
        ]
        groups = {t: i for i, t in enumerate(dict.fromkeys(row["task_id"] for row in rows))}
        group_ids = torch.tensor([groups[row["task_id"]] for row in rows])
        summary = {
            "records": len(rollouts),
            "prompts": len(groups),
            "prompts_skipped": 0,
            "skip_reasons": {},
            "zero_variance_groups": zero_variance_fraction(
                torch.tensor([row["score"] for row in rows]), group_ids
            ),
            "zero_variance_pass_groups": zero_variance_fraction(
                torch.tensor([row["pass_rate"] for row in rows]), group_ids
            ),
            "signals": signal_report(rows, self.config.scoring),
            "monitor": json.loads((d / "monitor.json").read_text("utf-8")),
        }
        write_json(d / "rewards.json", summary)
        write_jsonl(d / "rollouts.jsonl", rollouts)

    def reference(self) -> str:
        """The frozen reference of a round: the model before round 1 (base, or the
        configured adapter), or ``start`` (the policy the round starts from)."""
        it = self.config.iterate
        if it.reference == "previous" or (it.reference == "auto" and not self.config.rl):
            return "start"
        return self.config.model.adapter or "base"

    def train(self, r: int) -> None:
        if self.config.rl:
            self.train_rl(r)
            return
        from codealign.training.dpo import train_preference

        d = self.round_dir(r)
        records = [record for _, record in read_jsonl(d / "pairs.jsonl")]
        if not records:
            self.log(f"round {r}: no preference data; the policy stays as it is")
            write_json(d / "train.json", {"skipped": "no preference data", "records": 0})
            return
        metrics = train_preference(
            records,
            self.policy(r - 1),
            self.config.train,
            d / "adapter",
            reference=self.reference(),
            progress=self.progress,
        )
        write_json(d / "train.json", metrics)

    def train_rl(self, r: int) -> None:
        from codealign.training.ppo import train_ppo

        d = self.round_dir(r)
        rollouts = [record for _, record in read_jsonl(d / "rollouts.jsonl")]
        metrics = train_ppo(
            rollouts,
            self.policy(r - 1),
            self.config.ppo,
            d / "adapter",
            method=self.config.train.method,
            temperature=self.config.sampling.temperature,
            reference=self.reference(),
            progress=self.progress,
        )
        write_json(d / "train.json", metrics)

    def evaluate(self, r: int) -> None:
        from codealign.evaluation import evaluation_report

        d = self.round_dir(r) / "eval"
        it = self.config.iterate
        if not (d / "samples.jsonl").exists():
            self._sample(
                d / "samples.jsonl",
                list(self.eval_tasks.values()),
                r,
                it.eval_samples,
                self.config.sampling.seed,  # the same seed every round: paired comparisons
            )
        if not (d / "results.jsonl").exists():
            self._execute(d / "samples.jsonl", d / "results.jsonl", self.eval_tasks)
        report = evaluation_report(self.eval_tasks, self._results(d / "results.jsonl"), it.ks())
        report.pop("per_task")
        write_json(d / "metrics.json", report)

    # -- the loop -----------------------------------------------------------------------

    def _done(self, r: int, stage: str) -> bool:
        d = self.round_dir(r)
        it = self.config.iterate
        if stage == "evaluate" and 0 < r < it.rounds and r % it.eval_every:
            return True  # not an evaluation round
        marker = {
            "sample": d / "samples.jsonl",
            "execute": d / "results.jsonl",
            "score": d / "scored.jsonl",
            "pairs": d / "pairs.jsonl",
            "rewards": d / "rollouts.jsonl",
            "train": d / "train.json",
            "evaluate": d / "eval" / "metrics.json",
        }[stage]
        return marker.exists()

    def _run_stage(self, r: int, stage: str, rounds: int) -> None:
        if self._done(r, stage):
            return
        self._stage(r, stage, rounds)
        started = time.perf_counter()
        d = self.round_dir(r)
        d.mkdir(parents=True, exist_ok=True)
        it = self.config.iterate
        if stage == "sample":
            self._sample(
                d / "samples.jsonl",
                self.training_prompts(r),
                r - 1,
                it.samples_per_prompt,
                self.config.sampling.seed + 1000 * r,
            )
        elif stage == "execute":
            self._execute(d / "samples.jsonl", d / "results.jsonl", self.train_tasks)
        elif stage == "score":
            self.score(r)
        elif stage == "pairs":
            self.pairs(r)
        elif stage == "rewards":
            self.rewards(r)
        elif stage == "train":
            self.train(r)
        else:
            self.evaluate(r)
        self._time(r, stage, time.perf_counter() - started)

    def run(self) -> dict[str, Any]:
        from codealign.evaluation.run_report import write_report

        rounds = self.config.iterate.rounds
        self._run_stage(0, "evaluate", rounds)
        write_report(self.dir, self.config.iterate.ks(), rounds)
        for r in range(1, rounds + 1):
            for stage in self.stages:
                self._run_stage(r, stage, rounds)
            report = write_report(self.dir, self.config.iterate.ks(), rounds)
            self.log(_round_line(report["rounds"][-1], self.config.iterate.ks()))
        return write_report(self.dir, self.config.iterate.ks(), rounds)


def _round_line(row: dict[str, Any], ks: Sequence[int]) -> str:
    scores = ", ".join(
        f"pass@{k} {row[f'pass@{k}']:.3f}" for k in ks if row.get(f"pass@{k}") is not None
    )
    scores = scores or "not evaluated (iterate.eval_every)"
    if "rollouts" in row:
        train = row.get("train", {})
        reward, kl = train.get("reward_mean"), train.get("kl")
        rl = f"{row['rollouts']} rollouts"
        if reward is not None and kl is not None:
            rl += f", mean reward {reward:.3f}, KL {kl:.3f}"
        return f"round {row['round']}: {scores}; {rl}"
    return f"round {row['round']}: {scores}; {row.get('pairs', 0)} pairs"


def iterate(
    run_dir: str | Path,
    config: RunConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the loop in ``run_dir``; returns the report."""
    run = Run(run_dir, config, progress=progress, log=log)
    _check_run_dir(run.dir, config)
    return run.run()
