"""``train-rm``, ``eval-rm`` and ``rm-pairs``: reward models and the readability pairs."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from codealign.cli.common import add_config_file_flags
from codealign.cli.evaluation import add_execution_flags
from codealign.errors import InputError
from codealign.jsonl import write_json, write_jsonl
from codealign.settings.execution import ExecutionConfig
from codealign.settings.reward_model import RewardModelConfig
from codealign.settings.sources import add_config_arguments, config_from_sources
from codealign.settings.tracking import TrackingConfig


def cmd_train_rm(args: argparse.Namespace) -> int:
    from codealign import tracking
    from codealign.training import distributed
    from codealign.training.reward_model import load_pairs, train_reward_model

    config = config_from_sources(RewardModelConfig, args)
    pairs = load_pairs(args.pairs)
    held_human: list[dict[str, Any]] = []
    if args.human_labels:
        from codealign.readability.human import human_pairs, split_human

        if not args.human_pairs:
            raise InputError("--human-labels needs --human-pairs (the proposals they label)")
        human = human_pairs(args.human_labels, args.human_pairs, args.human_weight)
        train_human, held_human = split_human(human, args.human_heldout)
        pairs = pairs + train_human
        print(f"{len(train_human)} human-labelled pairs (weight {args.human_weight}) join "
              f"{len(pairs) - len(train_human)} others; {len(held_human)} held out")  # fmt: skip
    out = Path(args.out)
    with tracking.session(
        config_from_sources(TrackingConfig, args),
        name=out.name,
        logging_dir=out.with_name(out.name + ".logs"),  # out/ is replaced when saved
        hparams={"pairs": args.pairs, "reward_model": dataclasses.asdict(config)},
        main=distributed.current().main,
    ):
        metrics = train_reward_model(
            pairs, config, args.out, progress=not args.quiet, init=_init(args.init)
        )
    if held_human and distributed.current().main:
        metrics["human_heldout"] = _human_heldout(held_human, args.human_baseline, out)
    if distributed.current().main:  # under accelerate launch, one report for all processes
        shown = {k: v for k, v in metrics.items() if k != "config"}
        print(json.dumps(shown, indent=2))
        print(f"reward model saved to {args.out}")
    return 0


def _init(init: str | None) -> str | Path | None:
    """The reward model ``--init`` names ("builtin": the built-in readability model)."""
    if init != "builtin":
        return init
    from codealign.readability.default_model import ensure_default_readability_model

    return ensure_default_readability_model()


def _human_heldout(held: list[dict[str, Any]], baseline: str | None, out: Path) -> dict[str, Any]:
    """Accuracy on the held-out human labels, of the model refreshed and of the one it
    replaces; recorded in the new model's metrics.json."""
    from codealign.jsonl import write_json
    from codealign.models.reward import RewardModel
    from codealign.readability.default_model import ensure_default_readability_model
    from codealign.training.reward_model import evaluate_pairs

    before = RewardModel.load(baseline or ensure_default_readability_model(), device="cpu")
    after = RewardModel.load(out, device="cpu")
    result = {
        "pairs": len(held),
        "before": evaluate_pairs(before, held)["accuracy"],
        "after": evaluate_pairs(after, held)["accuracy"],
        "baseline": str(baseline or "built-in readability model"),
    }
    stored = json.loads((out / "metrics.json").read_text("utf-8"))
    write_json(out / "metrics.json", {**stored, "human_heldout": result})
    return result


def cmd_eval_rm(args: argparse.Namespace) -> int:
    from codealign.models.reward import RewardModel
    from codealign.readability.default_model import ensure_default_readability_model
    from codealign.training.reward_model import evaluate_pairs, load_pairs

    pairs = load_pairs(args.pairs)
    path = args.model or ensure_default_readability_model()
    report = evaluate_pairs(RewardModel.load(path, device=args.device), pairs)
    report.pop("rewards")
    report["model"] = str(path)
    print(
        f"pairwise accuracy {report['accuracy']:.4f} on {report['pairs']} pairs "
        f"(mean reward gap {report['mean_gap']:.3f})"
    )
    if args.json:
        write_json(args.json, report)
    return 0


def cmd_rm_pairs(args: argparse.Namespace) -> int:
    from codealign.readability.pairs import builtin_pairs, pair_records

    config = config_from_sources(ExecutionConfig, args)
    pairs, counts = builtin_pairs(seed=args.seed, config=config)
    write_jsonl(args.out, pair_records(pairs))
    print(f"wrote {len(pairs)} readability pairs to {args.out}; {json.dumps(counts)}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train-rm", help="train a reward model on preference pairs (Bradley-Terry)")
    p.add_argument(
        "--pairs",
        required=True,
        help="JSONL of {prompt, chosen, rejected[, margin, family]} or a datasets source",
    )
    p.add_argument("--out", required=True, help="directory for the trained reward model")
    p.add_argument(
        "--init",
        help="continue from this trained reward model, or 'builtin' (the built-in "
        "readability model): a refresh, instead of a fresh model on --base",
    )
    human = p.add_argument_group("human labels (codealign annotate)")
    human.add_argument("--human-labels", help="the labels JSONL annotate wrote")
    human.add_argument("--human-pairs", help="the proposals JSONL they label")
    human.add_argument(
        "--human-weight", type=float, default=2.0,
        help="how much a human-labelled pair counts against a synthetic one",
    )  # fmt: skip
    human.add_argument(
        "--human-heldout", type=float, default=0.25,
        help="share of the labelled pairs held out to measure accuracy on",
    )  # fmt: skip
    human.add_argument(
        "--human-baseline", help="the model compared on them (default: the built-in)"
    )
    add_config_arguments(p.add_argument_group("reward model"), RewardModelConfig)
    add_config_arguments(p.add_argument_group("experiment tracking"), TrackingConfig)
    add_config_file_flags(p, "reward_model, tracking")
    p.set_defaults(func=cmd_train_rm)

    p = sub.add_parser("eval-rm", help="pairwise accuracy of a reward model on a pairs file")
    p.add_argument("--pairs", required=True, help="JSONL of {prompt, chosen, rejected}")
    p.add_argument(
        "--model",
        help="reward model directory (default: the built-in "
        "readability model, trained on first use)",
    )
    p.add_argument("--device", default="auto", help="cuda, cpu; auto: CUDA if any")
    p.add_argument("--json", help="write {accuracy, mean_gap, pairs} here")
    p.set_defaults(func=cmd_eval_rm)

    p = sub.add_parser(
        "rm-pairs",
        help="generate the built-in readability pairs "
        "(degraded correct code, checked equivalent in the sandbox)",
    )
    p.add_argument("--out", required=True, help="pairs JSONL to write")
    p.add_argument("--seed", type=int, default=0)
    add_execution_flags(p, "execution")
    p.set_defaults(func=cmd_rm_pairs)
