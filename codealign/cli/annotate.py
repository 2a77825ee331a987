"""``propose-pairs`` and ``annotate``: the ambiguous readability pairs of a run, and the
local page where developers label them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codealign.errors import InputError
from codealign.web_guard import Guard, add_web_flags, web_options


def cmd_annotate(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from codealign.annotate.app import create_app
    except ImportError as exc:
        raise InputError(
            f"the labelling page needs FastAPI and uvicorn ({exc.name} is missing): "
            'pip install "codealign[serve]"'
        ) from None
    from codealign.annotate.store import LabelStore, read_pairs

    web = web_options(args, "the labels file")
    store = LabelStore(read_pairs(args.pairs), args.labels)
    done = len(store.labels())
    token = "#token=TOKEN, the token you gave" if web.token else ""
    print(
        f"codealign: {len(store.pairs)} pairs, {done} labels so far in {args.labels}; open "
        f"{web.scheme}://{args.host}:{args.port}/ (?annotator=NAME{token}), Ctrl-C to stop",
        flush=True,
    )
    guard = Guard.for_bind(args.host, web.allow_hosts, web.token, open_paths=("/",))
    uvicorn.run(create_app(store, guard), host=args.host, port=args.port, log_level="warning",
                **web.uvicorn_kwargs())  # fmt: skip
    return 0


def _latest_scored(run: Path, round_: int | None) -> Path:
    """The scored samples of ``round_``, or of the run's latest round that has them."""
    from codealign.loop.layout import RunLayout

    layout = RunLayout(run)
    if round_ is not None:
        path = layout.round(round_).scored
        if not path.exists():
            raise InputError(f"round {round_} of {run} has no scored samples ({path})")
        return path
    rounds = sorted(layout.dir.glob("round-*/scored.jsonl"), key=lambda p: int(p.parent.name[6:]))
    if not rounds:
        raise InputError(f"{run} has no round with scored samples (round-N/scored.jsonl)")
    return rounds[-1]


def cmd_propose_pairs(args: argparse.Namespace) -> int:
    from codealign.jsonl import write_jsonl
    from codealign.readability.ambiguous import correct_samples, propose
    from codealign.tasks import load_tasks

    run = Path(args.run)
    try:
        config = json.loads((run / "run.json").read_text("utf-8"))["config"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{run} is not a codealign run directory ({exc})") from None
    scored = _latest_scored(run, args.round)
    tasks = {t.task_id: t for t in load_tasks(config["iterate"]["train_tasks"])}
    candidates = correct_samples(scored, tasks, args.samples_per_task)
    models = [m.strip() for m in (args.readability_models or "").split(",") if m.strip()]
    proposals = propose(candidates, models, args.budget, args.per_task)
    write_jsonl(args.out, (q.record() for q in proposals))
    print(
        f"{len(proposals)} ambiguous pairs of {len({c.task_id for c in candidates})} tasks "
        f"from {scored} to {args.out} (label them: codealign annotate --pairs {args.out})"
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "annotate", help="a local page to label which of two correct programs reads better"
    )
    p.add_argument("--pairs", required=True, help="proposed pairs JSONL (rm-pairs --from-run)")
    p.add_argument("--labels", required=True, help="the labels JSONL (created, or continued)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=8765)
    add_web_flags(p)
    p.set_defaults(func=cmd_annotate)

    p = sub.add_parser(
        "propose-pairs",
        help="the readability pairs of a run's correct samples the reward models are least "
        "sure of, for people to label",
    )
    p.add_argument("--run", required=True, help="a codealign iterate run directory")
    p.add_argument("--round", type=int, help="the round whose samples to use (default: latest)")
    p.add_argument("--budget", type=float, default=40,
                   help="how many pairs: a count, or below 1 a share of them all")  # fmt: skip
    p.add_argument("--per-task", type=int, default=2, help="at most this many pairs per task")
    p.add_argument("--samples-per-task", type=int, default=8,
                   help="distinct correct programs considered per task")  # fmt: skip
    p.add_argument("--readability-models",
                   help="comma-separated reward models (default: the built-in)")  # fmt: skip
    p.add_argument("--out", required=True, help="the proposals JSONL to write")
    p.set_defaults(func=cmd_propose_pairs)
