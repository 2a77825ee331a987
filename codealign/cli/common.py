"""What several command groups share: the task-set flags and the config-file flags."""

from __future__ import annotations

import argparse
from pathlib import Path

from codealign.tasks import FORMATS, Task, load_tasks

TASKS_HELP = (
    "task set: a built-in name (humaneval, tiny-train, tiny-heldout), a JSONL/JSON/YAML "
    "file, a folder of test suites, a datasets folder or file, or hf:NAME[:SPLIT]"
)


def add_tasks_flags(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    if positional:
        parser.add_argument("tasks", help=TASKS_HELP)
    else:
        parser.add_argument("--tasks", required=True, help=TASKS_HELP)
    parser.add_argument(
        "--task-format",
        choices=FORMATS,
        help="format of the task rows (default: detected from their fields)",
    )


def add_config_file_flags(
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


def tasks_by_id(args: argparse.Namespace) -> dict[str, Task]:
    return {task.task_id: task for task in load_tasks(args.tasks, format=args.task_format)}


def checkpoint_for(out: Path) -> Path:
    """Where an interrupted run of ``out`` keeps what it finished (the next run resumes)."""
    return out.with_name(out.name + ".partial")


def default_config() -> str:
    """configs/tiny-cpu.yaml as shipped inside the package: the embedded default."""
    from importlib import resources

    return str(resources.files("codealign.configs") / "tiny-cpu.yaml")
