"""``iterate``, ``ppo`` and ``dpo``: the alignment loop, and one preference-training step."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from codealign.cli.common import add_config_file_flags, default_config
from codealign.cli.models import add_model_flags
from codealign.errors import InputError
from codealign.settings.execution import ExecutionConfig
from codealign.settings.loop import IterateConfig, RunConfig
from codealign.settings.methods import PREFERENCE_METHODS, RL_METHODS
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.scoring import ScoringConfig
from codealign.settings.sources import add_config_arguments, config_from_sources, flag_dest
from codealign.settings.tracking import TrackingConfig

METHOD = flag_dest("iterate", "method")


def run_config(args: argparse.Namespace) -> RunConfig:
    """Every section of a run, from the config file, ``--set`` overrides and flags."""
    return RunConfig(
        iterate=config_from_sources(IterateConfig, args),
        train=config_from_sources(PreferenceConfig, args),
        model=config_from_sources(ModelConfig, args),
        sampling=config_from_sources(SamplingConfig, args),
        execution=config_from_sources(ExecutionConfig, args),
        scoring=config_from_sources(ScoringConfig, args),
        ppo=config_from_sources(PPOConfig, args),
    )


def cmd_iterate(args: argparse.Namespace) -> int:
    from codealign import tracking
    from codealign.loop import iterate
    from codealign.loop.parallel import current_ranks

    if args.config is None:
        args.config = default_config()
    if args.quiet:
        from transformers.utils import logging

        logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # weight-loading bars
    config = run_config(args)
    if args.rl_only and config.iterate.method not in RL_METHODS:
        config.iterate.method = "ppo"  # `codealign ppo` on a config made for preferences
    method = config.iterate.method
    run_dir = Path(args.run_dir or Path("runs") / f"{Path(args.config).stem}-{method}")
    trackers = config_from_sources(TrackingConfig, args)
    ranks = current_ranks()  # accelerate launch: the main process reports
    if ranks is not None and not ranks.main:
        tracking.require(trackers)  # every process refuses a missing library alike
        iterate(run_dir, config, progress=False)
        return 0
    print(f"run directory: {run_dir} (rerun the same command to resume)")
    logs = run_dir / "logs"
    with tracking.session(trackers, name=run_dir.name, logging_dir=logs, hparams=config.as_dict()):
        report = iterate(run_dir, config, progress=not args.quiet)
    rows = report["rounds"]
    if rows:
        k = config.iterate.ks()[0]
        first, last = rows[0].get(f"pass@{k}"), rows[-1].get(f"pass@{k}")
        if first is not None and last is not None:
            print(
                f"held-out pass@{k}: {first:.3f} before, {last:.3f} after round "
                f"{rows[-1]['round']} ({last - first:+.3f})"
            )
    print(f"report: {run_dir / 'report.md'}, {run_dir / 'report.json'}, {run_dir / 'report.png'}")
    return 0


def cmd_dpo(args: argparse.Namespace) -> int:
    from codealign import tracking
    from codealign.training import distributed
    from codealign.training.dpo import load_records, train_preference

    config = config_from_sources(PreferenceConfig, args)
    model_config = config_from_sources(ModelConfig, args)
    method = config_from_sources(IterateConfig, args).method
    if method not in PREFERENCE_METHODS:
        raise InputError(
            f"iterate.method is {method}, which trains on rollouts (codealign ppo); give "
            f"--method {' | '.join(PREFERENCE_METHODS)}"
        )
    records = load_records(args.pairs, method)
    reference = args.reference if args.reference in ("start", "base") else Path(args.reference)
    out = Path(args.out)
    hparams = {
        "method": method,
        "pairs": args.pairs,
        "reference": str(reference),
        "train": dataclasses.asdict(config),
        "model": dataclasses.asdict(model_config),
    }
    with tracking.session(
        config_from_sources(TrackingConfig, args),
        name=out.name,
        logging_dir=out.with_name(out.name + ".logs"),  # out/ is replaced when saved
        hparams=hparams,
        main=distributed.current().main,
    ):
        metrics = train_preference(
            records,
            model_config,
            config,
            args.out,
            method=method,
            reference=reference,
            progress=not args.quiet,
        )
    if distributed.current().main:  # under accelerate launch, one report for all processes
        shown = {k: v for k, v in metrics.items() if k != "config"}
        print(json.dumps(shown, indent=2))
        print(f"adapter saved to {args.out}")
    return 0


def _add_method_flag(parser: argparse.ArgumentParser, methods: Sequence[str], default: str) -> None:
    parser.add_argument(
        "--method",
        dest=METHOD,
        choices=methods,
        help=f"the training method: iterate.method (default: {default})",
    )


def _add_loop_flags(p: argparse.ArgumentParser, methods: Sequence[str], default: str) -> None:
    add_config_arguments(p, IterateConfig, only=("rounds",))
    add_config_arguments(p, SamplingConfig, only=("backend",))
    add_config_arguments(p.add_argument_group("experiment tracking"), TrackingConfig)
    p.add_argument(
        "--run-dir",
        help="where every round's files go; the same command again resumes there "
        "(default: runs/CONFIG-METHOD)",
    )
    _add_method_flag(p, methods, default)
    add_config_file_flags(
        p,
        "iterate, train, ppo, model, sampling, execution, scoring, tracking; default: "
        "configs/tiny-cpu.yaml",
    )
    p.set_defaults(func=cmd_iterate, rl_only=False)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "iterate",
        help="the alignment loop: sample, execute, score, pair (or reward) and train, round "
        "after round, with held-out pass@k before and after every round",
    )
    _add_loop_flags(p, PREFERENCE_METHODS + RL_METHODS, "the config's, dpo")

    p = sub.add_parser(
        "ppo",
        help="online RL: sample, execute, score and update with PPO (value head, KL "
        "penalty, GAE), GRPO or RLOO, round after round; iterate --method ppo",
    )
    _add_loop_flags(p, RL_METHODS, "the config's if it is one of these, else ppo")
    p.set_defaults(rl_only=True)

    p = sub.add_parser(
        "dpo", help="train a LoRA/QLoRA adapter on preference pairs (DPO, IPO, KTO or ORPO)"
    )
    p.add_argument(
        "--pairs",
        required=True,
        help="pairs JSONL from 'codealign pairs' (KTO: its --kto file); token ids are used "
        "where present, else prompt and responses are tokenized separately",
    )
    p.add_argument("--out", required=True, help="directory for the trained adapter")
    p.add_argument(
        "--reference",
        default="start",
        help="the reference policy: 'start' (the model as loaded, adapter included), "
        "'base' (adapters off) or a saved adapter directory",
    )
    _add_method_flag(p, PREFERENCE_METHODS, "the config's, dpo")
    add_config_arguments(p.add_argument_group("training"), PreferenceConfig)
    add_model_flags(p, sampling=False)
    add_config_arguments(p.add_argument_group("experiment tracking"), TrackingConfig)
    add_config_file_flags(p, "train, iterate (method), model, tracking")
    p.set_defaults(func=cmd_dpo)
