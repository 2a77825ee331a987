"""The round loop: sample → execute → score → pairs (or rewards) → train → evaluate, R
times, walking the stage table of the method's recipe.

Everything a round makes is a file in the run directory (``codealign.loop.layout``),
written atomically, and a stage whose output exists is finished: rerunning the same
command after a crash (even ``kill -9``) continues from the first missing file. Round 0
is the model before training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codealign import tracking
from codealign.loop.backends import Backends
from codealign.loop.parallel import COLLECTIVE
from codealign.loop.refresh import due as refresh_due
from codealign.loop.report import write_report
from codealign.loop.resume import check_run_dir
from codealign.loop.stages import EVALUATE, Stage, stage_table
from codealign.loop.state import RunState
from codealign.memory import release_memory
from codealign.settings.loop import RunConfig


class Run(RunState):
    """A run directory, its task sets, and the stages of its rounds."""

    def __init__(
        self,
        run_dir: str | Path,
        config: RunConfig,
        *,
        backends: Backends | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        super().__init__(run_dir, config, backends=backends, progress=progress, log=log)
        refresh = config.iterate.rm_refresh_every > 0
        self.stages: Sequence[Stage] = stage_table(config.rl, self.overlap, refresh)

    # -- the loop --------------------------------------------------------------------------

    def _done(self, r: int, stage: Stage) -> bool:
        it = self.config.iterate
        if stage.name == "evaluate" and 0 < r < it.rounds and r % it.eval_every:
            return True  # not an evaluation round
        if stage.name == "refresh" and not refresh_due(self, r):
            return True  # not a refresh round
        return stage.marker(self.layout.round(r)).exists()

    def wait(self) -> None:
        """All processes here before any goes on (one process: nothing to wait for)."""
        if self.ranks is not None:
            self.ranks.wait()

    def _run_stage(self, r: int, stage: Stage) -> None:
        if self._done(r, stage):
            return
        where = "before training" if r == 0 else f"round {r}/{self.config.iterate.rounds}"
        self.log(f"── {where} · {stage.name}")
        started = time.perf_counter()
        paths = self.layout.round(r)
        if self.main:
            paths.dir.mkdir(parents=True, exist_ok=True)
        self.wait()
        if self.main or stage.name in COLLECTIVE:
            earlier = (self.layout.round(k).train_metrics() or {} for k in range(1, r))
            steps = sum(int(metrics.get("steps", 0)) for metrics in earlier)
            with tracking.round_steps(r, steps):  # steps count on over the rounds
                stage.run(self, r)
        if self.main:
            paths.add_time(stage.name, time.perf_counter() - started)
        release_memory()  # what a stage freed is the next stage's (its engine, its workers)
        self.wait()  # every process sees the stage's files before the next one

    def _report(self, ks: Sequence[int], rounds: int) -> dict[str, Any]:
        if not self.main:
            return {"rounds": []}
        report = write_report(self.layout, ks, rounds)
        tracking.log_rounds(report["rounds"])
        return report

    def run(self) -> dict[str, Any]:
        ks, rounds = self.config.iterate.ks(), self.config.iterate.rounds
        self._run_stage(0, EVALUATE)
        self._report(ks, rounds)
        for r in range(1, rounds + 1):
            for stage in self.stages:
                self._run_stage(r, stage)
            report = self._report(ks, rounds)
            if report["rounds"]:
                self.log(round_line(report["rounds"][-1], ks))
        return self._report(ks, rounds)


def round_line(row: dict[str, Any], ks: Sequence[int]) -> str:
    """A finished round in one line of the log."""
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
    backends: Backends | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the loop in ``run_dir``; returns the report."""
    run = Run(run_dir, config, backends=backends, progress=progress, log=log)
    if run.main:
        check_run_dir(run.layout, config)
    run.wait()
    return run.run()
