"""What every stage of a round reads of its run: the run directory, the settings, the
task sets, the engines, and the policy and reference of each round."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path

from codealign.errors import InputError
from codealign.loop.backends import Backends
from codealign.loop.layout import RunLayout
from codealign.loop.parallel import check_parallel_run, current_ranks, sharded
from codealign.settings.loop import RunConfig
from codealign.settings.model import ModelConfig
from codealign.tasks import Task, load_tasks


class RunState:
    """One run directory, its settings, its task sets and the policy of each round: what
    every stage reads (``Run`` adds the loop that walks the stages)."""

    def __init__(
        self,
        run_dir: str | Path,
        config: RunConfig,
        *,
        backends: Backends | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.layout = RunLayout(Path(run_dir))
        self.config = config
        self.backends = backends or Backends()
        # Under accelerate launch: sampling sharded over the processes (loop.parallel).
        self.ranks = current_ranks()
        if self.ranks is not None:
            check_parallel_run(config, self.ranks.world)
            self.backends = dataclasses.replace(
                self.backends, sample=sharded(self.backends.sample, self.ranks)
            )
        self.main = self.ranks is None or self.ranks.main
        self.progress = progress and self.main
        self.log = log if self.main else lambda _: None
        #: Execution overlaps sampling only in one process (each shard must be in first).
        self.overlap = config.sampling.overlap and self.ranks is None
        _check_method(config)
        it = config.iterate
        train = load_tasks(it.train_tasks, format=it.task_format)
        held = load_tasks(it.eval_tasks, format=it.task_format)
        self.train_tasks = {t.task_id: t for t in train}
        self.eval_tasks = {t.task_id: t for t in held}
        overlap = set(self.train_tasks) & set(self.eval_tasks)
        if overlap:
            raise InputError(
                f"{len(overlap)} tasks are in both the training and the held-out set "
                f"(e.g. {sorted(overlap)[0]!r}): held-out pass@k would be meaningless"
            )

    # -- the policy of each round ------------------------------------------------------

    def adapter_after(self, r: int) -> str | None:
        """The policy's adapter after round ``r`` (round 0: the configured one)."""
        for k in range(r, 0, -1):
            if self.layout.round(k).has_adapter():
                return str(self.layout.round(k).adapter)
        return self.config.model.adapter

    def policy(self, r: int) -> ModelConfig:
        return dataclasses.replace(self.config.model, adapter=self.adapter_after(r))

    def reference(self) -> str:
        """The frozen reference of a round: the model before round 1 (base, or the
        configured adapter), or ``start`` (the policy the round starts from)."""
        it = self.config.iterate
        if it.reference == "previous" or (it.reference == "auto" and not self.config.rl):
            return "start"
        return self.config.model.adapter or "base"

    def training_prompts(self, r: int) -> list[Task]:
        """Round ``r``'s training prompts: all, or a fresh seeded subset each round."""
        tasks = list(self.train_tasks.values())
        k = self.config.iterate.prompts_per_round
        if k and k < len(tasks):
            tasks = random.Random(f"{self.config.sampling.seed}/{r}").sample(tasks, k)
        return tasks


def _check_method(config: RunConfig) -> None:
    """Refuse the settings under which the method cannot learn anything."""
    method = config.iterate.method
    if config.rl and config.iterate.reference == "previous":
        raise InputError(
            f"iterate.reference=previous would make the KL penalty of {method} zero (the "
            "reference would be the policy that sampled the rollouts); use initial (or auto)"
        )
    if config.rl and config.sampling.temperature == 0:
        raise InputError(
            f"{method} learns from sampled rollouts: greedy decoding "
            "(sampling.temperature=0) gives the same completion every time"
        )
