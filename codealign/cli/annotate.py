"""``annotate``: the local labelling page for readability preferences."""

from __future__ import annotations

import argparse

from codealign.errors import InputError


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

    store = LabelStore(read_pairs(args.pairs), args.labels)
    done = len(store.labels())
    print(
        f"codealign: {len(store.pairs)} pairs, {done} labels so far in {args.labels}; open "
        f"http://{args.host}:{args.port}/ (?annotator=NAME), Ctrl-C to stop",
        flush=True,
    )
    uvicorn.run(create_app(store), host=args.host, port=args.port, log_level="warning")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "annotate", help="a local page to label which of two correct programs reads better"
    )
    p.add_argument("--pairs", required=True, help="proposed pairs JSONL (rm-pairs --from-run)")
    p.add_argument("--labels", required=True, help="the labels JSONL (created, or continued)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_annotate)
