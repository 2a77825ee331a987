"""Experiment trackers: every optimiser step's log and every round's metrics, sent to
TensorBoard, Weights & Biases, Trackio or MLflow through each one's own library
(``tracking.report_to``).

A command opens a ``session`` around its work, on the main process only. The recipes
report each optimiser step with ``log_step`` and the loop each finished round with
``log_rounds``; both do nothing while no session is open, so no tracker is passed down
the recipes and they run as before without one. Whatever happens, a session's runs are
finished on the way out, marked failed (or killed) when the work raised.

Each kind of metric has its own x axis (``AXES``): the training steps (counted on over
the rounds of a loop) and the round number. TensorBoard and MLflow keep a step per
value; wandb's own step may only grow, so it is given each axis as a metric to plot
against instead.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

from codealign.errors import InputError
from codealign.settings.tracking import TRACKERS, TrackingConfig

#: How a tracked run ended.
Outcome = Literal["finished", "failed", "killed"]
#: Metric name -> value, with the namespace in the name (``train/loss``).
Metrics = dict[str, float]

TRAIN, ROUND = "train", "round"
#: The x axis of each namespace: the metric its values are plotted against.
AXES = {TRAIN: "train/step", ROUND: "round/number"}


@dataclass(frozen=True)
class RunInfo:
    """What a tracker opens its run with."""

    project: str
    name: str
    logging_dir: Path
    #: The command's settings, recorded as the run's config (hyperparameters).
    hparams: Mapping[str, Any]


class Tracker(Protocol):
    """One tracker's open run."""

    def log(self, metrics: Metrics, axis: str, step: int) -> None:
        """Record ``metrics`` at ``step`` of ``axis`` (one of ``AXES``' values)."""

    def close(self, outcome: Outcome) -> None:
        """Finish the run (and flush what is buffered)."""


# -- the trackers ------------------------------------------------------------------------


class TensorBoardTracker:
    """Event files under ``logging_dir/<run name>``: one folder per run, so TensorBoard
    pointed at ``logging_dir`` compares the runs written there."""

    def __init__(self, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.logging_dir / run.name))
        text = json.dumps(run.hparams, indent=2, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```")

    def log(self, metrics: Metrics, axis: str, step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self, outcome: Outcome) -> None:
        self.writer.close()


class WandbTracker:
    """A wandb run (``WANDB_MODE=offline`` keeps it on disk, under ``logging_dir``)."""

    def __init__(self, run: RunInfo) -> None:
        import wandb

        run.logging_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=run.project, name=run.name, dir=str(run.logging_dir), config=dict(run.hparams)
        )
        self.axes: set[str] = set()

    def log(self, metrics: Metrics, axis: str, step: int) -> None:
        if axis not in self.axes:
            # wandb's own step must only grow, and rounds and training steps interleave:
            # each namespace is plotted against its axis, logged as a metric beside it.
            self.axes.add(axis)
            self.run.define_metric(axis)
            self.run.define_metric(axis.split("/")[0] + "/*", step_metric=axis)
        self.run.log({**metrics, axis: step})

    def close(self, outcome: Outcome) -> None:
        self.run.finish(exit_code={"finished": 0, "failed": 1, "killed": 130}[outcome])


class TrackioTracker:
    """A trackio run in the local database (``TRACKIO_DIR``), or a Space where trackio's
    own settings (``TRACKIO_SPACE_ID``) say so."""

    def __init__(self, run: RunInfo) -> None:
        import trackio

        # embed=False: a command line has no notebook to put the dashboard in.
        self.run = trackio.init(
            project=run.project, name=run.name, config=dict(run.hparams), embed=False
        )

    def log(self, metrics: Metrics, axis: str, step: int) -> None:
        self.run.log({**metrics, axis: step}, step=step)

    def close(self, outcome: Outcome) -> None:
        self.run.finish()


#: MLflow's limits: the characters of a metric name, a parameter's length, and the
#: parameters one call may log.
_MLFLOW_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")
_MLFLOW_PARAM_CHARS = 6000
_MLFLOW_PARAMS_PER_CALL = 100


def mlflow_name(key: str) -> str:
    """``key`` as MLflow accepts a metric name (``round/pass@1`` -> ``round/pass_at_1``)."""
    return _MLFLOW_NAME.sub("_", key.replace("@", "_at_"))


def flat(values: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings as one level, the keys joined by ``sep``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flat(value, name, sep))
        else:
            out[name] = value
    return out


class MlflowTracker:
    """An MLflow run in the experiment named by the project, on the tracking server (or
    store) that ``MLFLOW_TRACKING_URI`` names, else MLflow's default."""

    def __init__(self, run: RunInfo) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        experiment = self.client.get_experiment_by_name(run.project)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(run.project)
        )
        self.run_id: str = self.client.create_run(experiment_id, run_name=run.name).info.run_id
        params = [
            Param(key, str(value)[:_MLFLOW_PARAM_CHARS]) for key, value in flat(run.hparams).items()
        ]
        for start in range(0, len(params), _MLFLOW_PARAMS_PER_CALL):
            self.client.log_batch(
                self.run_id, params=params[start : start + _MLFLOW_PARAMS_PER_CALL]
            )

    def log(self, metrics: Metrics, axis: str, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(mlflow_name(k), v, now, step) for k, v in metrics.items()],
        )

    def close(self, outcome: Outcome) -> None:
        self.client.set_terminated(self.run_id, outcome.upper())


#: Tracker name -> its class, and the module it needs (installed by the extra named
#: like the tracker).
BACKENDS: dict[str, tuple[Callable[[RunInfo], Tracker], str]] = {
    "tensorboard": (TensorBoardTracker, "tensorboard"),
    "wandb": (WandbTracker, "wandb"),
    "trackio": (TrackioTracker, "trackio"),
    "mlflow": (MlflowTracker, "mlflow"),
}
assert set(BACKENDS) == set(TRACKERS), "a tracker the settings accept has no class here"


def require(config: TrackingConfig) -> None:
    """Refuse, before any work starts, a tracker whose library is not installed."""
    for name in config.trackers():
        module = BACKENDS[name][1]
        if importlib.util.find_spec(module) is None:
            raise InputError(
                f"tracking.report_to names {name}, whose library is not installed: "
                f"pip install 'codealign[{name}]'"
            )


# -- the session and the hooks -------------------------------------------------------------


def _finite(values: Mapping[str, Any]) -> Metrics:
    """The numbers among ``values``: NaN marks a value a step could not measure (KTO's
    batch without a desirable sample), None a round that did not (an unevaluated one)."""
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def round_metrics(row: Mapping[str, Any]) -> Metrics:
    """A report row as metrics: pass@k, the scoring signals, the overoptimisation
    monitor (``monitor/gap``), the training summary and the seconds of every stage,
    nested keys joined by ``/``."""
    return _finite({k: v for k, v in flat(row, sep="/").items() if k != "round"})


@dataclass
class Session:
    """The open trackers of one command, and the numbering of its training steps."""

    trackers: Sequence[Tracker]
    #: Added to a recipe's step numbers: the steps of the loop's earlier rounds.
    step_offset: int = 0
    #: Logged with every step (the loop's round).
    step_extra: Metrics = field(default_factory=dict)
    rounds_logged: set[int] = field(default_factory=set)

    def log(self, namespace: str, step: int, values: Mapping[str, Any]) -> None:
        metrics = {f"{namespace}/{k}": v for k, v in _finite(values).items()}
        if metrics:
            for tracker in self.trackers:
                tracker.log(metrics, AXES[namespace], step)


_current: Session | None = None


def _closer(tracker: Tracker) -> Callable[..., bool]:
    def close(
        kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if kind is None:
            tracker.close("finished")
        else:
            tracker.close("killed" if issubclass(kind, KeyboardInterrupt) else "failed")
        return False  # the exception, if any, goes on

    return close


@contextmanager
def session(
    config: TrackingConfig,
    *,
    name: str,
    logging_dir: Path,
    hparams: Mapping[str, Any],
    main: bool = True,
) -> Iterator[Session | None]:
    """The trackers ``config`` names, open while the block runs (None when it names none,
    or on a process other than the ``main`` one); ``name`` and ``logging_dir`` are the
    defaults of ``config.run_name`` and ``config.logging_dir``."""
    global _current
    require(config)
    if not config.trackers() or not main:
        yield None
        return
    run = RunInfo(
        config.project,
        config.run_name or name,
        Path(config.logging_dir) if config.logging_dir else logging_dir,
        hparams,
    )
    with ExitStack() as stack:
        trackers = []
        for tracker_name in config.trackers():  # one that fails to open closes the others
            tracker = BACKENDS[tracker_name][0](run)
            stack.push(_closer(tracker))
            trackers.append(tracker)
        previous, _current = _current, Session(trackers)
        try:
            yield _current
        finally:
            _current = previous


def log_step(row: Mapping[str, float]) -> None:
    """A recipe's optimiser step: its step-log row, numbered by its ``step``."""
    if _current is not None:
        values = {k: v for k, v in row.items() if k != "step"} | _current.step_extra
        _current.log(TRAIN, _current.step_offset + int(row["step"]), values)


@contextmanager
def round_steps(r: int, earlier_steps: int) -> Iterator[None]:
    """Within the block, round ``r``'s training steps count on from ``earlier_steps``, the
    steps of the rounds before it (the loop reads them from their train.json, so a resumed
    run numbers them alike)."""
    if _current is None:
        yield
        return
    _current.step_offset, _current.step_extra = earlier_steps, {"round": float(r)}
    try:
        yield
    finally:
        _current.step_offset, _current.step_extra = 0, {}


def log_rounds(rows: Sequence[Mapping[str, Any]]) -> None:
    """The loop's report rows, each round once (a resumed run logs the earlier ones on
    its first report)."""
    if _current is None:
        return
    for row in rows:
        r = int(row["round"])
        if r not in _current.rounds_logged:
            _current.rounds_logged.add(r)
            _current.log(ROUND, r, round_metrics(row))
