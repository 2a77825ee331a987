"""Experiment trackers: each one's own library writes locally (TensorBoard event files,
an offline wandb run, an MLflow sqlite store, trackio's database), and what it wrote is
read back: the steps the recipes logged, the loop's rounds, the run's end state."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from codealign import tracking
from codealign.cli import build_parser, main
from codealign.errors import InputError
from codealign.settings.preference import PreferenceConfig
from codealign.settings.sources import build_config, config_from_sources, load_config_file
from codealign.settings.tracking import TrackingConfig
from codealign.tracking import RunInfo, log_rounds, log_step, round_metrics, session
from tests.test_iterate import Fakes, make_run, run_config
from tests.training.test_distributed import pairs_file

Scalars = dict[str, list[tuple[int, float]]]


def tensorboard_scalars(logdir: Path) -> Scalars:
    """Every scalar TensorBoard's own reader finds under ``logdir``, as (step, value)."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def wandb_records(logging_dir: Path) -> list[Any]:
    """The records of the one offline wandb run under ``logging_dir``. A .wandb file is a
    7-byte header, then LevelDB's log format: 32 KiB blocks of chunks, each with a 7-byte
    header (CRC, length, type: 1 whole, 2 first, 3 middle, 4 last)."""
    import wandb
    from wandb.proto import wandb_internal_pb2 as pb

    # wandb's service writes the file in the background, after finish() returns; its
    # teardown waits for it (as a command's exit does).
    wandb.teardown()
    (path,) = logging_dir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, block = path.read_bytes(), 7, 32768
    records, pending = [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


def log_rows() -> None:
    """Two optimiser steps and two report rows, through the hooks the code calls."""
    log_step({"step": 1, "loss": 0.5, "lr": 1e-3, "chosen_logp_per_token": float("nan")})
    log_step({"step": 2, "loss": 0.25, "lr": 5e-4, "chosen_logp_per_token": -1.5})
    log_rounds(ROWS)
    log_rounds(ROWS)  # each round once


ROWS = [
    {"round": 0, "pass@1": 0.25, "seconds": {"evaluate": 2.0}},
    {
        "round": 1,
        "pass@1": None,  # not evaluated this round
        "signals": {"execution": 0.5},
        "monitor": {"reward_tests_pass_rate": 0.75, "heldback_tests_pass_rate": 0.5, "gap": 0.25},
        "train": {"loss_last": 0.25, "steps": 2},
        "skip_reasons": {"all_equal": 3},
        "seconds": {"sample": 1.5, "train": 3.0},
    },
]


def log_everything(config: TrackingConfig, logging_dir: Path) -> None:
    with session(config, name="demo", logging_dir=logging_dir, hparams={"train": {"beta": 0.1}}):
        log_rows()


# -- settings and the command line ---------------------------------------------------------


def test_report_to_takes_none_or_a_list_of_known_trackers() -> None:
    assert TrackingConfig().trackers() == ()
    config = TrackingConfig(report_to=" TensorBoard, wandb,tensorboard")
    assert config.trackers() == ("tensorboard", "wandb") and config.report_to == "tensorboard,wandb"
    assert TrackingConfig(report_to="none").report_to == "none"
    with pytest.raises(ValueError, match=r"unknown tracker.*comet"):
        TrackingConfig(report_to="tensorboard,comet")
    with pytest.raises(InputError, match="tracking: report_to: unknown"):
        build_config(TrackingConfig, {"report_to": "all"}, source="tracking")
    # A YAML list is the same list.
    listed = build_config(TrackingConfig, {"report_to": ["wandb", "mlflow"]}, source="tracking")
    assert listed.trackers() == ("wandb", "mlflow")


@pytest.mark.parametrize("command", ["iterate", "ppo", "dpo", "train-rm"])
def test_every_training_command_takes_the_flags_and_the_config_section(
    command: str, tmp_path: Path
) -> None:
    config_file = tmp_path / "c.yaml"
    config_file.write_text("tracking:\n  report_to: tensorboard,mlflow\n  project: p\n")
    assert load_config_file(config_file)["tracking"]["project"] == "p"
    required = {"dpo": ["--pairs", "x", "--out", "y"], "train-rm": ["--pairs", "x", "--out", "y"]}
    argv = [command, *required.get(command, []), "--config", str(config_file)]
    args = build_parser().parse_args([*argv, "--report-to", "wandb", "--run-name", "r1"])
    config = config_from_sources(TrackingConfig, args)
    assert (config.report_to, config.project, config.run_name) == ("wandb", "p", "r1")
    args = build_parser().parse_args(argv)
    assert config_from_sources(TrackingConfig, args).trackers() == ("tensorboard", "mlflow")


def test_a_missing_library_is_refused_before_any_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, package=None: None if name == "wandb" else real(name, package),
    )
    with pytest.raises(InputError, match=r"pip install 'codealign\[wandb\]'"):
        tracking.require(TrackingConfig(report_to="tensorboard,wandb"))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    out = tmp_path / "adapter"
    argv = ["dpo", "--pairs", str(pairs), "--out", str(out), "--report-to", "wandb", "-q"]
    assert main(argv) == 2
    assert "codealign[wandb]" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("adapter.logs").exists()


# -- the session ----------------------------------------------------------------------------


class Recorder:
    """A tracker that keeps what it is given."""

    opened: ClassVar[list[Recorder]] = []

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        self.logged: list[tuple[str, int, dict[str, float]]] = []
        self.outcome: str | None = None
        Recorder.opened.append(self)

    def log(self, metrics: dict[str, float], axis: str, step: int) -> None:
        self.logged.append((axis, step, metrics))

    def close(self, outcome: str) -> None:
        self.outcome = outcome


class Unopenable:
    def __init__(self, run: RunInfo) -> None:
        raise RuntimeError("no server")


@pytest.fixture
def recorders(monkeypatch: pytest.MonkeyPatch) -> list[Recorder]:
    Recorder.opened = []
    monkeypatch.setitem(tracking.BACKENDS, "tensorboard", (Recorder, "json"))
    monkeypatch.setitem(tracking.BACKENDS, "trackio", (Unopenable, "json"))
    return Recorder.opened


def test_hooks_do_nothing_without_a_session_or_off_the_main_process(
    recorders: list[Recorder], tmp_path: Path
) -> None:
    log_rows()  # no session: nothing happens
    config = TrackingConfig(report_to="tensorboard")
    with session(config, name="n", logging_dir=tmp_path, hparams={}, main=False) as open_:
        assert open_ is None
        log_rows()
    assert recorders == []


def test_steps_rounds_and_the_outcome_reach_every_tracker(
    recorders: list[Recorder], tmp_path: Path
) -> None:
    config = TrackingConfig(report_to="tensorboard", run_name="mine")
    log_everything(config, tmp_path)
    (rec,) = recorders
    assert (rec.run.name, rec.run.logging_dir, rec.outcome) == ("mine", tmp_path, "finished")
    steps = [(axis, step, m) for axis, step, m in rec.logged if axis == "train/step"]
    assert steps == [
        ("train/step", 1, {"train/loss": 0.5, "train/lr": 1e-3}),  # NaN left out
        (
            "train/step",
            2,
            {"train/loss": 0.25, "train/lr": 5e-4, "train/chosen_logp_per_token": -1.5},
        ),
    ]
    rounds = [(step, m) for axis, step, m in rec.logged if axis == "round/number"]
    assert [step for step, _ in rounds] == [0, 1]
    assert rounds[1][1] == {
        "round/signals/execution": 0.5,
        "round/monitor/reward_tests_pass_rate": 0.75,
        "round/monitor/heldback_tests_pass_rate": 0.5,
        "round/monitor/gap": 0.25,
        "round/train/loss_last": 0.25,
        "round/train/steps": 2.0,
        "round/skip_reasons/all_equal": 3.0,
        "round/seconds/sample": 1.5,
        "round/seconds/train": 3.0,
    }
    with (
        pytest.raises(KeyboardInterrupt),
        session(config, name="n", logging_dir=tmp_path, hparams={}),
    ):
        raise KeyboardInterrupt
    assert recorders[-1].outcome == "killed"


def test_a_tracker_that_cannot_open_closes_the_ones_already_open(
    recorders: list[Recorder], tmp_path: Path
) -> None:
    config = TrackingConfig(report_to="tensorboard,trackio")
    with pytest.raises(RuntimeError, match="no server"):
        log_everything(config, tmp_path)
    assert [r.outcome for r in recorders] == ["failed"]
    log_step({"step": 1, "loss": 1.0})  # the failed session is no longer the open one
    assert recorders[0].logged == []


def test_round_metrics_flatten_a_report_row() -> None:
    assert round_metrics({"round": 3, "pass@1": 0.5, "train": {"skipped": "no data"}}) == {
        "pass@1": 0.5
    }
    assert tracking.mlflow_name("round/pass@10") == "round/pass_at_10"


# -- each tracker's own library ---------------------------------------------------------------


def test_tensorboard_event_files_hold_the_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    log_everything(TrackingConfig(report_to="tensorboard"), tmp_path)
    scalars = tensorboard_scalars(tmp_path / "demo")  # a folder per run name
    assert scalars["train/loss"] == [(1, 0.5), (2, 0.25)]
    assert [step for step, _ in scalars["train/chosen_logp_per_token"]] == [2]
    assert scalars["round/pass@1"] == [(0, 0.25)]
    assert scalars["round/monitor/gap"] == [(1, 0.25)]
    assert scalars["round/seconds/train"] == [(1, 3.0)]


def test_wandb_offline_run_holds_the_history_config_and_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = TrackingConfig(report_to="wandb", project="codealign-test")
    log_everything(config, tmp_path / "ok")
    records = wandb_records(tmp_path / "ok")
    history = wandb_history(records)
    steps = [(h["train/step"], h["train/loss"]) for h in history if "train/step" in h]
    assert steps == [(1, 0.5), (2, 0.25)]
    rounds = {h["round/number"]: h for h in history if "round/number" in h}
    assert rounds[0]["round/pass@1"] == 0.25 and rounds[1]["round/monitor/gap"] == 0.25
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert (run.project, run.display_name) == ("codealign-test", "demo")
    assert json.loads(next(u.value_json for u in run.config.update if u.key == "train")) == {
        "beta": 0.1
    }
    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert {(m.glob_name, m.step_metric) for m in metrics if m.glob_name} == {
        ("train/*", "train/step"),
        ("round/*", "round/number"),
    }
    with (
        pytest.raises(ValueError),
        session(config, name="bad", logging_dir=tmp_path / "bad", hparams={}),
    ):
        raise ValueError
    exits = [
        r.exit for r in wandb_records(tmp_path / "bad") if r.WhichOneof("record_type") == "exit"
    ]
    assert [e.exit_code for e in exits] == [1]


def test_mlflow_sqlite_store_holds_the_metrics_params_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    config = TrackingConfig(report_to="mlflow", project="codealign-test")
    log_everything(config, tmp_path)
    with pytest.raises(ValueError), session(config, name="bad", logging_dir=tmp_path, hparams={}):
        raise ValueError
    client = MlflowClient()
    experiment = client.get_experiment_by_name("codealign-test")
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {name: r.info.status for name, r in runs.items()} == {
        "demo": "FINISHED",
        "bad": "FAILED",
    }
    run_id = runs["demo"].info.run_id
    history = client.get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.25)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "round/pass_at_1")] == [
        (0, 0.25)
    ]
    assert runs["demo"].data.params == {"train.beta": "0.1"}


TRACKIO_SCRIPT = """
import json, sys
from pathlib import Path
from codealign.settings.tracking import TrackingConfig
from tests.test_tracking import log_everything
log_everything(TrackingConfig(report_to="trackio", project="codealign-test"), Path(sys.argv[1]))
from trackio.sqlite_storage import SQLiteStorage
print("LOGS", json.dumps(SQLiteStorage.get_logs("codealign-test", "demo")))
"""


def test_trackio_local_database_holds_the_logs(tmp_path: Path) -> None:
    pytest.importorskip("trackio")
    # trackio reads TRACKIO_DIR when first imported: a process of its own.
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TRACKIO_SCRIPT), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("LOGS ")]
    logs = json.loads(line.removeprefix("LOGS "))
    assert [(row["step"], row["train/loss"]) for row in logs if "train/loss" in row] == [
        (1, 0.5),
        (2, 0.25),
    ]
    assert [
        (row["step"], row["round/monitor/gap"]) for row in logs if "round/monitor/gap" in row
    ] == [(1, 0.25)]


# -- the loop and the commands, end to end -------------------------------------------------------


class SteppingFakes(Fakes):
    """The loop's fakes, with a trainer that logs three optimiser steps a round."""

    def train(
        self, records: list[dict[str, Any]], model: Any, config: PreferenceConfig,
        out: Path, *, method: str, reference: object, progress: bool,
    ) -> dict[str, Any]:  # fmt: skip
        metrics = super().train(
            records, model, config, out, method=method, reference=reference, progress=progress
        )
        r = int(out.parent.name.split("-")[1])
        for step in (1, 2, 3):
            log_step({"step": step, "loss": r + step / 10})
        return {**metrics, "steps": 3}


def test_the_loop_logs_each_round_and_numbers_the_steps_on_over_rounds_and_resumes(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorboard")
    fakes, config = SteppingFakes(), TrackingConfig(report_to="tensorboard")
    run_dir = tmp_path / "run"
    for rounds in (1, 2):  # the second session resumes the run for one more round
        with session(config, name="run", logging_dir=run_dir / "logs", hparams={}):
            make_run(run_dir, run_config(rounds=rounds), fakes).run()
    scalars = tensorboard_scalars(run_dir / "logs" / "run")
    loss = sorted(set(scalars["train/loss"]))
    assert [step for step, _ in loss] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in loss] == pytest.approx([1.1, 1.2, 1.3, 2.1, 2.2, 2.3])
    assert sorted(set(scalars["train/round"])) == [(s, 1.0 + (s > 3)) for s in range(1, 7)]
    report = json.loads((run_dir / "report.json").read_text())
    rows = report["rounds"]
    passed = sorted(set(scalars["round/pass@1"]))  # rounds 0-1 logged again by the resume
    assert [step for step, _ in passed] == [0, 1, 2]
    assert [value for _, value in passed] == pytest.approx([row["pass@1"] for row in rows])
    gaps = sorted(set(scalars["round/monitor/gap"]))
    assert [step for step, _ in gaps] == [1, 2]
    assert [value for _, value in gaps] == pytest.approx([r["monitor"]["gap"] for r in rows[1:]])
    assert {"round/signals/execution", "round/seconds/train", "round/pairs"} <= set(scalars)


def test_iterate_opens_its_trackers_in_the_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    import codealign.loop

    fakes = SteppingFakes()

    def fake_iterate(run_dir: Path, config: Any, *, progress: bool) -> dict[str, Any]:
        return make_run(run_dir, config, fakes).run()

    monkeypatch.setattr(codealign.loop, "iterate", fake_iterate)
    run_dir = tmp_path / "run"
    argv = ["iterate", "--rounds", "1", "--run-dir", str(run_dir), "-q", "--report-to",
            "tensorboard", "--set", "execution.sandbox=process",
            "--set", "execution.allow_unisolated=true", "--set", "sampling.overlap=false",
            "--set", "scoring.readability_weight=0", "--set", "scoring.types_weight=0",
            "--set", "iterate.samples_per_prompt=4", "--set", "iterate.eval_samples=4",
            "--set", "iterate.eval_k=1,4"]  # fmt: skip
    assert main(argv) == 0
    scalars = tensorboard_scalars(run_dir / "logs" / "run")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [step for step, _ in scalars["round/pass@1"]] == [0, 1]


@pytest.mark.integration
def test_dpo_sends_every_step_of_its_train_log_to_tensorboard_and_wandb(
    small_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "adapter"
    argv = ["dpo", "--pairs", str(pairs_file(tmp_path / "pairs.jsonl", 6)), "--out", str(out),
            "--model", str(small_model_dir), "--device", "cpu", "--batch-size", "2",
            "--epochs", "2", "--max-length", "96", "--lr", "1e-2", "-q",
            "--report-to", "tensorboard,wandb"]  # fmt: skip
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(rows) == 6  # 3 steps an epoch, 2 epochs
    logs = tmp_path / "adapter.logs"  # beside the adapter, which saving replaces whole
    scalars = tensorboard_scalars(logs / "adapter")
    assert [step for step, _ in scalars["train/loss"]] == [row["step"] for row in rows]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(
        [r["loss"] for r in rows], rel=1e-6
    )
    assert [v for _, v in scalars["train/grad_norm"]] == pytest.approx(
        [r["grad_norm"] for r in rows], rel=1e-6
    )
    history = [h for h in wandb_history(wandb_records(logs)) if "train/step" in h]
    assert [(h["train/step"], h["train/loss"]) for h in history] == [
        (row["step"], pytest.approx(row["loss"])) for row in rows
    ]


@pytest.mark.integration
def test_train_rm_sends_its_steps_to_tensorboard(small_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    out = tmp_path / "rm"
    argv = ["train-rm", "--pairs", str(pairs_file(tmp_path / "pairs.jsonl", 6)), "--out",
            str(out), "--base", str(small_model_dir), "--device", "cpu", "--batch-size", "2",
            "--epochs", "2", "--eval-fraction", "0", "--max-length", "96", "-q",
            "--report-to", "tensorboard", "--logging-dir", str(tmp_path / "tb"),
            "--run-name", "rm-1"]  # fmt: skip
    assert main(argv) == 0
    scalars = tensorboard_scalars(tmp_path / "tb" / "rm-1")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert {"train/accuracy", "train/lr"} <= set(scalars)
    assert (out / "metrics.json").exists()


@pytest.mark.integration
def test_under_accelerate_launch_only_the_main_process_logs(
    small_model_dir: Path, tmp_path: Path
) -> None:
    """Two processes train one reward model: one run's events, each step once."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("accelerate")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "-m", "codealign.cli"]  # fmt: skip
    argv = ["train-rm", "--pairs", str(pairs_file(tmp_path / "pairs.jsonl", 8)), "--out",
            str(tmp_path / "rm"), "--base", str(small_model_dir), "--device", "cpu",
            "--batch-size", "2", "--epochs", "1", "--eval-fraction", "0", "--max-length", "96",
            "-q", "--report-to", "tensorboard"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launch, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = tmp_path / "rm.logs"
    assert len(list(logs.rglob("events.out.tfevents.*"))) == 1
    scalars = tensorboard_scalars(logs / "rm")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2]  # 8 pairs, 4 a step


@pytest.mark.integration
def test_ppo_sends_every_step_of_its_train_log(small_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from codealign.settings.ppo import PPOConfig
    from codealign.training.ppo import train_ppo
    from tests.training.test_dpo import model_config
    from tests.training.test_ppo import rollouts

    config = PPOConfig(epochs=2, minibatch_size=4, micro_batch_size=2)
    with session(
        TrackingConfig(report_to="tensorboard"), name="ppo", logging_dir=tmp_path, hparams={}
    ):
        train_ppo(rollouts(), model_config(small_model_dir), config, tmp_path / "a", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").open()]
    assert len(rows) == 4  # 8 rollouts, 4 a step, 2 epochs
    scalars = tensorboard_scalars(tmp_path / "ppo")
    for key in ("policy_loss", "clip_fraction", "approx_kl", "reward_mean"):
        assert [step for step, _ in scalars[f"train/{key}"]] == [row["step"] for row in rows]
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx(
            [row[key] for row in rows], rel=1e-5, abs=1e-7
        )
