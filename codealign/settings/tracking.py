"""Experiment tracking settings (the ``tracking`` section): where ``iterate``, ``ppo``,
``dpo`` and ``train-rm`` send their training logs, besides their own files."""

from __future__ import annotations

from dataclasses import dataclass, field

from codealign.settings.helptext import help_text

#: The trackers ``report_to`` may name, each installed by the extra of the same name.
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow")


@dataclass
class TrackingConfig:
    report_to: str = field(
        default="none",
        metadata=help_text(
            "Experiment trackers that get every optimiser step's log and (iterate, ppo) every "
            "round's metrics: none, or a comma-separated list of tensorboard, wandb, trackio, "
            "mlflow, each through its own library (pip install 'codealign[wandb]', ...). "
            "Under accelerate launch only the main process logs."
        ),
    )
    project: str = field(
        default="codealign",
        metadata=help_text("The wandb and trackio project, the mlflow experiment."),
    )
    run_name: str | None = field(
        default=None,
        metadata=help_text(
            "The run's name in the trackers; default: the name of the run directory "
            "(iterate, ppo) or of --out (dpo, train-rm)."
        ),
    )
    logging_dir: str | None = field(
        default=None,
        metadata=help_text(
            "Where the trackers that write locally put their files: TensorBoard's events "
            "(in a folder per run name) and wandb's run folder; default: RUN_DIR/logs "
            "(iterate, ppo) or OUT.logs beside --out (dpo, train-rm), whose folder is "
            "replaced when the model is saved. mlflow follows MLFLOW_TRACKING_URI and "
            "trackio TRACKIO_DIR."
        ),
    )

    def __post_init__(self) -> None:
        names = self.trackers()
        unknown = [n for n in names if n not in TRACKERS]
        if unknown:
            raise ValueError(
                f"report_to: unknown tracker(s) {', '.join(unknown)}; give none or a "
                f"comma-separated list of {', '.join(TRACKERS)}"
            )
        self.report_to = ",".join(names) or "none"
        if not self.project.strip():
            raise ValueError("project must not be empty")

    def trackers(self) -> tuple[str, ...]:
        """The trackers named, each once, in the order given; none for ``none``."""
        names = [n.strip().lower() for n in self.report_to.split(",") if n.strip()]
        return tuple(dict.fromkeys(n for n in names if n != "none"))
