"""The round loop: stage order, resume after a crash in any stage, and the report.

Sampling and training are replaced by fakes, passed in as the run's backends (the real
ones have their own tests and an end-to-end integration test below); execution and
scoring are real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codealign.errors import InputError
from codealign.execution import ExecutionConfig
from codealign.loop import Backends, Run
from codealign.loop.resume import check_run_dir
from codealign.loop.stages import Stage, stage_table
from codealign.settings.loop import IterateConfig, RunConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import Task
from codealign.tasks.tiny import tiny_tasks

WRONG = "    return None\n"


class Fakes:
    """A sampler whose policy gets better with every adapter, and a trainer that writes
    an adapter folder; both count their calls."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def sample(
        self, tasks: list[Task], model: ModelConfig, sampling: SamplingConfig, progress: bool
    ) -> Iterator[list[dict[str, Any]]]:
        self.calls["sample"] += 1
        good = 1 + (int(Path(model.adapter).parent.name.split("-")[1]) if model.adapter else 0)
        # Streamed last task first: the loop must put the samples back in task order.
        for task in reversed(tasks):
            yield [
                {
                    "task_id": task.task_id,
                    "completion": task.canonical_solution if j % 4 < good else WRONG,
                    "prompt_ids": [1, 2],
                    "completion_ids": [3 + (j % 4 < good)],
                    "policy": model.adapter,
                }
                for j in range(sampling.n)
            ]

    def train(
        self, records: list[dict[str, Any]], model: ModelConfig, config: PreferenceConfig,
        out: Path, *, method: str, reference: object, progress: bool,
    ) -> dict[str, Any]:  # fmt: skip
        self.calls["train"] += 1
        self.method = method
        out.mkdir(parents=True)
        (out / "adapter_config.json").write_text("{}")
        return {"records": len(records), "start": model.adapter, "reference": str(reference)}

    def train_rl(
        self, records: list[dict[str, Any]], model: ModelConfig, config: PPOConfig,
        out: Path, *, method: str, temperature: float, reference: object, progress: bool,
    ) -> dict[str, Any]:  # fmt: skip
        self.calls["train"] += 1
        self.rollouts = records
        out.mkdir(parents=True)
        (out / "adapter_config.json").write_text("{}")
        rewards = [r["reward"] for r in records]
        return {
            "method": method,
            "start": model.adapter,
            "reference": str(reference),
            "temperature": temperature,
            "reward_mean": sum(rewards) / len(rewards),
            "kl": 0.5,
            "steps": 3,
        }

    def backends(self) -> Backends:
        return Backends(sample=self.sample, train_preference=self.train, train_rl=self.train_rl)


STAGES = [stage.name for stage in stage_table(rl=False, overlap=True)]
RL_STAGE_NAMES = [stage.name for stage in stage_table(rl=True, overlap=True)]
SEQUENTIAL = [stage.name for stage in stage_table(rl=False, overlap=False)]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def run_config(rounds: int = 2, overlap: bool = True, **iterate: Any) -> RunConfig:
    return RunConfig(
        iterate=IterateConfig(rounds=rounds, samples_per_prompt=4, eval_samples=4, eval_k="1,4",
                              **iterate),
        train=PreferenceConfig(),
        model=ModelConfig(),
        sampling=SamplingConfig(overlap=overlap),
        execution=ExecutionConfig(sandbox="process", allow_unisolated=True, workers=2),
        scoring=ScoringConfig(types_weight=0, readability_weight=0),
    )  # fmt: skip


def make_run(path: Path, config: RunConfig, fakes: Fakes) -> Run:
    run = Run(path, config, backends=fakes.backends(), progress=False, log=lambda _: None)
    run.train_tasks = {t.task_id: t for t in tiny_tasks("train")[:5]}
    run.eval_tasks = {t.task_id: t for t in tiny_tasks("heldout")[:3]}
    check_run_dir(run.layout, config)
    return run


def strip_times(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in report["rounds"]]


def test_rounds_chain_policies_and_report(fakes: Fakes, tmp_path: Path) -> None:
    report = make_run(tmp_path, run_config(), fakes).run()
    rows = report["rounds"]
    assert [row["round"] for row in rows] == [0, 1, 2]
    # The fake policy passes 1, 2, 3 samples in 4 as adapters accumulate.
    assert [row["pass@1"] for row in rows] == [0.25, 0.5, 0.75]
    assert rows[1]["pairs"] == 5 and rows[1]["prompts_skipped"] == 0
    assert set(rows[1]["seconds"]) == set(STAGES)
    assert fakes.calls == {"sample": 2 + 3, "train": 2}
    r2 = [json.loads(line) for line in (tmp_path / "round-2" / "samples.jsonl").open()]
    assert {r["policy"] for r in r2} == {str(tmp_path / "round-1" / "adapter")}
    train2 = json.loads((tmp_path / "round-2" / "train.json").read_text())
    assert train2["start"] == str(tmp_path / "round-1" / "adapter")
    assert train2["reference"] == "start"  # reference: previous, precomputed
    # Monitored tasks (4+ asserts) hold tests back; those verdicts never reach the score.
    mon = json.loads((tmp_path / "round-1" / "monitor.json").read_text())
    assert mon["tasks_monitored"] >= 1
    assert mon["reward_tests_pass_rate"] == mon["heldback_tests_pass_rate"] == 0.25
    for name in ("report.json", "report.md", "report.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| 2 | 0.750 |" in (tmp_path / "report.md").read_text()


def test_the_report_pairs_rounds_with_round_0_and_shows_the_answers(
    fakes: Fakes, tmp_path: Path
) -> None:
    """Each round's change from round 0 with its paired interval; what the held-out
    answers looked like; the evaluation sampled at iterate.eval_temperature."""
    temperatures: list[float] = []
    plain = fakes.sample

    def sample(
        tasks: list[Task], model: ModelConfig, sampling: SamplingConfig, progress: bool
    ) -> Iterator[list[dict[str, Any]]]:
        temperatures.append(sampling.temperature)
        for group in plain(tasks, model, sampling, progress):
            yield [
                {
                    **record,
                    "finish_reason": "length" if j == 0 else "stop",
                    "answer": {"entry_point": "other_name" if j == 1 else "defined"},
                }
                for j, record in enumerate(group)
            ]

    fakes.sample = sample  # type: ignore[method-assign]
    report = make_run(tmp_path, run_config(eval_temperature=0.2), fakes).run()
    # Evaluations (rounds 0, 1, 2) at 0.2; the training samples at sampling.temperature.
    assert temperatures == [0.2, 0.8, 0.2, 0.8, 0.2]
    rows = report["rounds"]
    assert "change" not in rows[0]
    # Every task goes 1/4 -> 3/4 by round 2: +0.5 on each, so no spread at all.
    change = rows[2]["change"]["pass@1"]
    assert (change["change"], change["low"], change["high"]) == (0.5, 0.5, 0.5)
    assert rows[1]["change"]["pass@1"]["change"] == 0.25
    assert rows[1]["eval_answers"]["cut_at_limit"] == 0.25
    assert rows[1]["eval_answers"]["wrong_name"] == 0.25
    md = (tmp_path / "report.md").read_text()
    assert "| 2 | +0.500 [+0.500, +0.500] |" in md and "| 0 | – | – |" in md


def test_overlapped_stages_make_the_same_run_as_sequential_ones(
    fakes: Fakes, tmp_path: Path
) -> None:
    overlapped = make_run(tmp_path / "a", run_config(overlap=True), fakes).run()
    sequential = make_run(tmp_path / "b", run_config(overlap=False), fakes).run()
    assert strip_times(overlapped) == strip_times(sequential)
    assert set(sequential["rounds"][1]["seconds"]) == set(SEQUENTIAL)
    for name in ("round-1/samples.jsonl", "round-2/eval/samples.jsonl"):
        text = (tmp_path / "a" / name).read_text().replace(str(tmp_path / "a"), "RUN")
        assert text == (tmp_path / "b" / name).read_text().replace(str(tmp_path / "b"), "RUN")

    def verdicts(run: str) -> list[tuple[Any, ...]]:
        rows = [json.loads(line) for line in (tmp_path / run / "round-2/results.jsonl").open()]
        return [(r["task_id"], r["sample_index"], r["status"], r["pass_rate"]) for r in rows]

    assert verdicts("a") == verdicts("b")
    assert not list(tmp_path.rglob("*.partial"))


def test_reference_initial_means_the_base(fakes: Fakes, tmp_path: Path) -> None:
    make_run(tmp_path, run_config(rounds=2, reference="initial"), fakes).run()
    assert json.loads((tmp_path / "round-2" / "train.json").read_text())["reference"] == "base"


def test_kto_trains_on_labelled_samples_of_informative_prompts(
    fakes: Fakes, tmp_path: Path
) -> None:
    config = run_config(rounds=1)
    config.iterate.method = "kto"
    make_run(tmp_path, config, fakes).run()
    records = [json.loads(line) for line in (tmp_path / "round-1" / "pairs.jsonl").open()]
    # Duplicates collapse: one right and one wrong completion per prompt.
    assert sorted(r["label"] for r in records) == [False] * 5 + [True] * 5
    assert all(r["completion_ids"] and r["prompt_ids"] == [1, 2] for r in records)


@pytest.mark.parametrize("method", ["ppo", "grpo", "rloo"])
def test_rl_rounds_train_on_scored_rollouts_against_the_initial_model(
    fakes: Fakes, tmp_path: Path, method: str
) -> None:
    config = run_config(rounds=2)
    config.iterate.method = method
    report = make_run(tmp_path, config, fakes).run()
    rows = report["rounds"]
    assert [row["pass@1"] for row in rows] == [0.25, 0.5, 0.75]
    assert set(rows[1]["seconds"]) == set(RL_STAGE_NAMES)
    assert not (tmp_path / "round-1" / "pairs.jsonl").exists()
    # Every sample is a rollout: its token ids, and the score of the tests it may see.
    scored = [json.loads(line) for line in (tmp_path / "round-2" / "scored.jsonl").open()]
    assert len(fakes.rollouts) == len(scored) == 5 * 4
    assert [r["reward"] for r in fakes.rollouts] == [r["score"] for r in scored]
    assert all(r["prompt_ids"] == [1, 2] and r["completion_ids"] for r in fakes.rollouts)
    train2 = json.loads((tmp_path / "round-2" / "train.json").read_text())
    assert train2["method"] == method and train2["reference"] == "base"
    assert train2["start"] == str(tmp_path / "round-1" / "adapter")
    assert train2["temperature"] == config.sampling.temperature
    assert rows[2]["rollouts"] == 20 and rows[2]["train"]["kl"] == 0.5
    # 2 of 4 samples right in every prompt of round 2: no prompt without signal
    assert rows[2]["zero_variance_pass_groups"] == 0.0
    markdown = (tmp_path / "report.md").read_text()
    assert "mean reward" in markdown and "| 2 | 0.750 |" in markdown
    assert "pairs" not in rows[2]


def test_eval_every_skips_the_held_out_evaluation_between_rounds(
    fakes: Fakes, tmp_path: Path
) -> None:
    config = run_config(rounds=3, eval_every=2)
    config.iterate.method = "grpo"
    rows = make_run(tmp_path, config, fakes).run()["rounds"]
    assert [row["pass@1"] for row in rows] == [0.25, None, 0.75, 1.0]
    assert not (tmp_path / "round-1" / "eval").exists()
    assert rows[1]["rollouts"] == 20 and rows[1]["train"]["kl"] == 0.5
    assert "| 1 | – |" in (tmp_path / "report.md").read_text()
    # eval_every may change on resume; the last round is always evaluated.
    config = run_config(rounds=5, eval_every=3)
    config.iterate.method = "grpo"
    rows = make_run(tmp_path, config, fakes).run()["rounds"]
    assert [row["pass@1"] is not None for row in rows] == [True, False, True, True, False, True]


def test_rl_refuses_a_reference_that_makes_the_kl_zero(tmp_path: Path) -> None:
    config = run_config()
    config.iterate.method = "ppo"
    config.iterate.reference = "previous"
    with pytest.raises(InputError, match="KL penalty of ppo zero"):
        Run(tmp_path, config)


def test_only_the_methods_own_settings_must_match_on_resume(fakes: Fakes, tmp_path: Path) -> None:
    config = run_config(rounds=1)
    config.iterate.method = "grpo"
    make_run(tmp_path / "rl", config, fakes).run()
    other = run_config(rounds=1)
    other.iterate.method = "grpo"
    other.train.beta = 0.5  # the preference settings do not touch an RL run
    make_run(tmp_path / "rl", other, fakes)
    other.ppo.kl_coef = 0.5
    with pytest.raises(InputError, match=r"ppo\.kl_coef"):
        make_run(tmp_path / "rl", other, fakes)
    make_run(tmp_path / "dpo", run_config(rounds=1), fakes).run()
    changed_ppo = run_config(rounds=1)
    changed_ppo.ppo.lr = 0.5
    make_run(tmp_path / "dpo", changed_ppo, fakes)


class Crash(Exception):
    pass


def crash_in_round_2(stage: Stage) -> Stage:
    """``stage``, except that its first call in round 2 dies half-way through writing."""

    def crashing(run: Run, r: int) -> None:
        if r == 2:
            torn = run.layout.round(2).dir / f".{stage.name}.jsonl.1234.tmp"
            torn.parent.mkdir(parents=True, exist_ok=True)
            torn.write_text('{"task_id": "torn', "utf-8")
            raise Crash
        stage.run(run, r)

    return dataclasses.replace(stage, run=crashing)


@pytest.mark.parametrize(
    ("overlap", "stage"), [(True, s) for s in STAGES] + [(False, s) for s in SEQUENTIAL[:2]]
)
def test_a_crash_in_any_stage_resumes_without_redoing_finished_work(
    fakes: Fakes, tmp_path: Path, overlap: bool, stage: str
) -> None:
    clean = make_run(tmp_path / "clean", run_config(overlap=overlap), fakes).run()
    fakes.calls.clear()

    crashing = make_run(tmp_path / "run", run_config(overlap=overlap), fakes)
    crashing.stages = [crash_in_round_2(s) if s.name == stage else s for s in crashing.stages]
    with pytest.raises(Crash):
        crashing.run()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "round-1").rglob("*")}
    resumed = make_run(tmp_path / "run", run_config(overlap=overlap), fakes).run()

    assert strip_times(resumed) == strip_times(clean)
    # Nothing round 1 finished was redone or rewritten.
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before
    # As many sampler and trainer calls as a run without a crash: the crashed call never
    # reached them, and nothing finished was done twice.
    assert fakes.calls == {"sample": 5, "train": 2}


def test_more_rounds_extend_a_finished_run(fakes: Fakes, tmp_path: Path) -> None:
    make_run(tmp_path, run_config(rounds=1), fakes).run()
    report = make_run(tmp_path, run_config(rounds=2), fakes).run()
    assert [row["round"] for row in report["rounds"]] == [0, 1, 2]
    assert fakes.calls == {"sample": 2 + 3, "train": 2}


def test_resuming_with_other_settings_is_refused(fakes: Fakes, tmp_path: Path) -> None:
    make_run(tmp_path, run_config(rounds=1), fakes).run()
    other = run_config(rounds=1)
    other.train.beta = 0.5
    with pytest.raises(InputError, match=r"train\.beta"):
        make_run(tmp_path, other, fakes)
    # The engine may change: the same policy and sampling settings on another one.
    engine = run_config(rounds=1, overlap=False)
    engine.sampling.backend, engine.sampling.tensor_parallel_size = "vllm", 2
    make_run(tmp_path, engine, fakes)
    engine.sampling.base_dtype = "bfloat16"
    with pytest.raises(InputError, match=r"sampling\.base_dtype"):
        make_run(tmp_path, engine, fakes)
    # A setting an upgrade added is taken at its default, so old runs still resume.
    stored = json.loads((tmp_path / "run.json").read_text())
    del stored["settings"]["scoring"]["pairs_per_prompt"]
    (tmp_path / "run.json").write_text(json.dumps(stored))
    make_run(tmp_path, run_config(rounds=1), fakes)
    other = run_config(rounds=1)
    other.scoring.pairs_per_prompt = 2
    with pytest.raises(InputError, match=r"scoring\.pairs_per_prompt"):
        make_run(tmp_path, other, fakes)


def test_overlapping_task_sets_are_refused(tmp_path: Path) -> None:
    config = run_config()
    config.iterate.eval_tasks = "tiny-train"
    with pytest.raises(InputError, match="both the training and the held-out set"):
        Run(tmp_path, config)


@pytest.mark.integration
@pytest.mark.sandbox
def test_iterate_on_the_tiny_model_survives_kill_9(tmp_path: Path) -> None:
    """The shortened loop end to end, killed with SIGKILL while round 1 is sampling and
    executing at once, and resumed: the journaled samples and checkpointed results are
    kept as they were, and finished stages are not redone."""
    run_dir = tmp_path / "run"
    argv = [
        sys.executable, "-m", "codealign.cli", "iterate", "--rounds", "1",
        "--run-dir", str(run_dir), "-q",
        "--set", "iterate.prompts_per_round=64", "--set", "iterate.eval_samples=4",
        "--set", "iterate.eval_k=1", "--set", "execution.sandbox=bwrap",
    ]  # fmt: skip
    log = tmp_path / "first.log"
    with log.open("w") as sink:
        first = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    journal = run_dir / "round-1" / "samples.jsonl.partial"
    checkpoint = run_dir / "round-1" / "results.jsonl.partial"

    def lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    deadline = time.monotonic() + 600
    while first.poll() is None and time.monotonic() < deadline:
        # One batch of 64 samples (8 prompts' groups) journaled, some of them executed.
        if len(lines(journal)) > 64 and len(lines(checkpoint)) > 2:
            break
        time.sleep(0.02)
    assert first.poll() is None, f"the first run ended early:\n{log.read_text()[-2000:]}"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    evaluated = run_dir / "round-0" / "eval" / "results.jsonl"
    stamp = evaluated.stat().st_mtime_ns
    groups: dict[str, list[dict[str, Any]]] = {}
    for line in lines(journal)[1:]:
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            groups.setdefault(record["task_id"], []).append(record)
    journaled = {task: group for task, group in groups.items() if len(group) == 8}
    executed = {}
    for line in lines(checkpoint)[1:]:
        with contextlib.suppress(ValueError):
            result = json.loads(line)
            executed[result["sample_index"]] = result["duration"]
    assert journaled and executed

    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert evaluated.stat().st_mtime_ns == stamp  # finished stages are not redone
    samples = [json.loads(line) for line in lines(run_dir / "round-1" / "samples.jsonl")]
    for task, group in journaled.items():  # sampled before the kill, kept as they were
        assert [s for s in samples if s["task_id"] == task] == group
    results = [json.loads(line) for line in lines(run_dir / "round-1" / "results.jsonl")]
    assert len(results) == len(samples) == 64 * 8
    for index, duration in executed.items():  # executed before the kill: not run again
        assert results[index]["duration"] == duration
    report = json.loads((run_dir / "report.json").read_text())
    assert [row["round"] for row in report["rounds"]] == [0, 1]
    assert report["rounds"][1]["pairs"] > 0
    assert report["rounds"][1]["train"]["steps"] >= 1
    assert (run_dir / "round-1" / "adapter" / "adapter_config.json").exists()
    assert "held-out pass@1" in done.stdout


@pytest.mark.integration
@pytest.mark.sandbox
def test_ppo_loop_on_the_tiny_model(tmp_path: Path) -> None:
    """`codealign ppo`, shortened: one round on 24 prompts, end to end."""
    run_dir = tmp_path / "run"
    argv = [
        sys.executable, "-m", "codealign.cli", "ppo", "--rounds", "1",
        "--run-dir", str(run_dir), "-q",
        "--set", "iterate.prompts_per_round=24", "--set", "iterate.eval_samples=4",
        "--set", "iterate.eval_k=1", "--set", "execution.sandbox=bwrap",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((run_dir / "report.json").read_text())
    row = report["rounds"][1]
    assert row["rollouts"] == 24 * 8 and row["train"]["steps"] >= 1
    adapter = run_dir / "round-1" / "adapter"
    for name in ("adapter_config.json", "value_head.safetensors", "rl_state.json"):
        assert (adapter / name).exists(), name
    step = json.loads((adapter / "train_log.jsonl").open().readline())
    for key in (
        "reward_mean", "reward_std", "kl", "kl_coef", "clip_fraction", "value_loss",
        "explained_variance", "entropy", "response_length", "zero_variance_groups",
    ):  # fmt: skip
        assert key in step, key
    assert "mean reward" in (run_dir / "report.md").read_text()
    assert "held-out pass@1" in done.stdout
