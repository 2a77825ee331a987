"""``score`` and ``pairs``: executed samples into scores, rankings and preference pairs."""

from __future__ import annotations

import argparse

from codealign.cli.common import add_config_file_flags, add_tasks_flags, tasks_by_id
from codealign.jsonl import write_json, write_jsonl
from codealign.samples import load_samples
from codealign.settings.scoring import ScoringConfig
from codealign.settings.sources import add_config_arguments, config_from_sources


def cmd_score(args: argparse.Namespace) -> int:
    from codealign.execution.records.results import read_results
    from codealign.scoring.base import Item
    from codealign.scoring.combine import scored_rows

    config = config_from_sources(ScoringConfig, args)
    tasks = tasks_by_id(args)
    samples = load_samples(args.samples, tasks)
    results = read_results(args.results, samples)
    items = [
        Item(tasks[s.task_id], s, results[s.index], s.program(tasks[s.task_id])) for s in samples
    ]
    rows = scored_rows(items, config)
    write_jsonl(args.out, rows)
    mean = sum(r["score"] for r in rows) / len(rows)
    print(f"scored {len(rows)} samples (mean score {mean:.3f}) to {args.out}")
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from codealign.scoring.pairs import kto_labels, load_scored, make_pairs
    from codealign.scoring.report import signal_report

    config = config_from_sources(ScoringConfig, args)
    rows = load_scored(args.scored)
    pairs, dropped = make_pairs(rows, config)
    write_jsonl(args.out, pairs)
    if args.kto:
        write_jsonl(args.kto, kto_labels(rows, config))
    report = signal_report(rows, config)
    if args.report:
        write_json(args.report, report)
    reasons = ", ".join(f"{n} {why}" for why, n in dropped.most_common()) or "none"
    print(
        f"{len(pairs)} pairs ({config.pair_strategy}) from {report['prompts']} prompts to "
        f"{args.out}; prompts dropped: {reasons}"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "score", help="score executed samples: pass rate, lint, types, readability (weighted)"
    )
    add_tasks_flags(p)
    p.add_argument("--samples", required=True, help="the samples JSONL that was executed")
    p.add_argument("--results", required=True, help="its results JSONL (codealign execute)")
    p.add_argument("--out", required=True, help="scored JSONL to write, in the order of samples")
    add_config_arguments(p.add_argument_group("scoring"), ScoringConfig)
    add_config_file_flags(p, "scoring")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("pairs", help="preference pairs (and KTO labels) from scored samples")
    p.add_argument("--scored", required=True, help="scored JSONL (codealign score)")
    p.add_argument("--out", required=True, help="pairs JSONL to write")
    p.add_argument("--kto", help="also write unpaired KTO examples (prompt, completion, label)")
    p.add_argument("--report", help="write the per-signal report (JSON) here")
    add_config_arguments(p.add_argument_group("pairs"), ScoringConfig)
    add_config_file_flags(p, "scoring")
    p.set_defaults(func=cmd_pairs)
