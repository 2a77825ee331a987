"""The ``codealign`` command: one module per command group, each building its own flags
from the settings dataclasses of the sections it reads and calling plain functions.

Nothing here imports torch or transformers at module level: ``--help``, ``tasks``,
``execute``, ``eval --samples``, ``score`` and ``sandbox`` start without them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from codealign.cli import (
    annotate,
    evaluation,
    models,
    reward_model,
    rewards,
    sandbox,
    scoring,
    training,
)
from codealign.errors import InputError

#: The command groups, in the order ``--help`` lists their commands.
GROUPS = (evaluation, sandbox, models, reward_model, scoring, training, rewards, annotate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codealign", description="Align code language models with execution-verified rewards."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


#: The commands that run data-parallel under ``accelerate launch`` (one process per device).
DATA_PARALLEL = ("cmd_iterate", "cmd_dpo", "cmd_train_rm")


def _check_launch(func: Any) -> None:
    """Under ``accelerate launch``, only the data-parallel commands: any other would run
    once per process, each writing the same files."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and getattr(func, "__name__", "") not in DATA_PARALLEL:
        raise InputError(
            f"this command runs in one process; under accelerate launch ({world} processes) "
            "only iterate, ppo, dpo and train-rm run data-parallel"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        _check_launch(func)
        return int(func(args))
    except InputError as exc:
        print(f"codealign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codealign: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
