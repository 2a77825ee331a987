"""``sample`` and ``merge``: a model's completions for a task set, and adapter export."""

from __future__ import annotations

import argparse
from typing import Any

from codealign.cli.common import add_config_file_flags, add_tasks_flags
from codealign.errors import InputError
from codealign.jsonl import write_jsonl
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.sources import add_config_arguments, config_from_sources
from codealign.tasks import Task, load_tasks


def add_model_flags(parser: argparse.ArgumentParser, sampling: bool = True) -> None:
    """The model section's flags (``--model`` is ``model.name``), and the sampling ones."""
    add_config_arguments(parser.add_argument_group("model"), ModelConfig, {"name": "model"})
    if sampling:
        add_config_arguments(parser.add_argument_group("sampling"), SamplingConfig)


def sample_from_flags(args: argparse.Namespace, tasks: list[Task]) -> list[dict[str, Any]]:
    """Sample completions for ``tasks`` with the model the flags and config name."""
    from codealign.models.stream import sample_with_model

    return sample_with_model(
        tasks,
        config_from_sources(ModelConfig, args),
        config_from_sources(SamplingConfig, args),
        progress=not args.quiet,
    )


def cmd_sample(args: argparse.Namespace) -> int:
    tasks = load_tasks(args.tasks, format=args.task_format)
    records = sample_from_flags(args, tasks)
    write_jsonl(args.out, records)
    print(f"wrote {len(records)} samples for {len(tasks)} tasks to {args.out}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from codealign.models.loading import merge_adapter

    config = config_from_sources(ModelConfig, args)
    if not config.adapter:
        raise InputError("give the adapter to merge with --adapter DIR")
    out = merge_adapter(config, args.out)
    print(f"merged {config.adapter} into {config.name}: {out}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sample", help="sample completions from a model for every task")
    add_tasks_flags(p)
    p.add_argument("--out", required=True, help="samples JSONL to write (with token ids)")
    add_model_flags(p)
    add_config_file_flags(p, "model, sampling")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "merge", help="merge a LoRA adapter into a full-precision copy of its base, for export"
    )
    p.add_argument("--out", required=True, help="directory for the merged model and tokenizer")
    add_model_flags(p, sampling=False)
    add_config_file_flags(p, "model", quiet=False)
    p.set_defaults(func=cmd_merge)
