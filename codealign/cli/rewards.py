"""``serve`` and ``verl-data``: codealign's verdicts for other trainers (OpenRLHF's remote
reward model, verl's training data)."""

from __future__ import annotations

import argparse

from codealign.cli.common import add_config_file_flags, add_tasks_flags
from codealign.cli.evaluation import add_execution_flags
from codealign.errors import InputError
from codealign.settings.execution import ExecutionConfig
from codealign.settings.scoring import ScoringConfig
from codealign.settings.sources import add_config_arguments, config_from_sources
from codealign.tasks import load_tasks
from codealign.web_guard import add_web_flags, web_options


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from codealign.rewards.server import ServerLimits, serve
    except ImportError as exc:
        raise InputError(
            f"the reward server needs FastAPI and uvicorn ({exc.name} is missing): "
            'pip install "codealign[serve]"'
        ) from None
    from codealign.rewards.verifier import Verifier

    if args.request_timeout_s <= 0:
        raise InputError("--request-timeout-s must be positive")
    web = web_options(args, "this machine's sandboxes to run code")  # refusals before loading
    verifier = Verifier(
        load_tasks(args.tasks, format=args.task_format),
        execution=config_from_sources(ExecutionConfig, args),
        scoring=config_from_sources(ScoringConfig, args),
        heldback_fraction=args.heldback_fraction,
        heldback_min_tests=args.heldback_min_tests,
    )
    limits = ServerLimits(
        args.max_items, args.max_body_mb * 2**20, request_timeout_s=args.request_timeout_s
    )
    print(
        f"codealign: serving {len(verifier.tasks)} tasks on {web.scheme}://{args.host}:"
        f"{args.port} (POST /get_reward, POST /verify, GET /health)"
        + (" with a bearer token" if web.token else ""),
        flush=True,
    )
    serve(verifier, host=args.host, port=args.port, reward=args.reward, limits=limits,
          allow_hosts=web.allow_hosts, token=web.token, tls=web.uvicorn_kwargs())  # fmt: skip
    return 0


def cmd_verl_data(args: argparse.Namespace) -> int:
    from codealign.rewards.verl import write_verl_parquet

    tasks = load_tasks(args.tasks, format=args.task_format)
    out = write_verl_parquet(tasks, args.out, data_source=args.data_source, split=args.split)
    print(f"{len(tasks)} tasks to {out} (verl: data.train_files / data.val_files)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="a reward server: verdicts over HTTP (OpenRLHF's --remote_rm_url)"
    )
    add_tasks_flags(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--reward",
        choices=("pass_rate", "passed", "score"),
        default="pass_rate",
        help="what /get_reward returns: the reward tests' pass rate, 1 if all pass, or "
        "codealign's weighted score (scoring flags)",
    )
    p.add_argument("--max-items", type=int, default=1024, help="answers per request, at most")
    p.add_argument("--max-body-mb", type=int, default=16, help="request body size, at most")
    p.add_argument("--request-timeout-s", type=float, default=600.0,
                   help="a request's deadline: past it a 504, the server serving on")  # fmt: skip
    add_web_flags(p)
    p.add_argument("--heldback-fraction", type=float, default=0.25,
                   help="share of a task's tests the reward never sees (monitor)")  # fmt: skip
    p.add_argument("--heldback-min-tests", type=int, default=4,
                   help="tasks with fewer tests hold none back")  # fmt: skip
    add_execution_flags(p)
    add_config_arguments(p.add_argument_group("scoring"), ScoringConfig)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("verl-data", help="write a task set as the parquet verl trains from")
    add_tasks_flags(p)
    p.add_argument("--out", required=True, help="the parquet file to write")
    p.add_argument("--data-source", default="codealign", help="the rows' data_source")
    p.add_argument("--split", default="train", help="extra_info.split of the rows")
    add_config_file_flags(p, "none")
    p.set_defaults(func=cmd_verl_data)
