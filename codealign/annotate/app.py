"""The labelling page's server (FastAPI): the page itself, and a small JSON API.

- ``GET /``: the page (one HTML file with its script and styles inline: no build step);
- ``GET /api/next?annotator=NAME``: progress and the next pair, sides and diff marks set;
- ``POST /api/label``: ``{"annotator", "pair_id", "side": left | right | tie | skip}``;
- ``POST /api/undo``: ``{"annotator"}`` takes back that annotator's latest label;
- ``GET /api/agreement``: agreement between annotators.

A malformed post (wrong types included: the bodies are validated strictly) gets a 422
and a label for a pair that is not proposed a 404, with the reason; nothing is written
then. A pair's diff and warnings are worked out in a worker thread, so a huge pair never
holds up the other annotators. Who may call at all (Host, Origin, token, content type)
is ``codealign.web_guard``'s to decide, before any route runs: by default loopback only
and same-origin only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.concurrency import run_in_threadpool

from codealign.annotate.store import (
    Choice,
    LabelStore,
    agreement,
    hidden_chars,
    left_side,
    line_diff,
)
from codealign.rewards.server import parse_body, read_body
from codealign.web_guard import Guard, GuardMiddleware

#: A whole name: no leading or trailing space, and no newline that ``$`` would let by.
_NAME = re.compile(r"[\w.@+-](?:[\w .@+-]{0,62}[\w.@+-])?")
MAX_BODY = 64 * 1024
#: The default guard: loopback Hosts only, same-origin, no token (the page is open: it
#: holds no data, and takes the token for its calls from the address's #token=).
LOOPBACK = Guard(open_paths=frozenset({"/"}))
_PAGE_HEADERS = {
    "content-security-policy": "frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _annotator(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            "annotator: 1 to 64 letters, digits, spaces or . _ @ + -, not starting or "
            "ending with a space"
        )
    return name


class LabelPost(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    annotator: str
    pair_id: str
    side: Literal["left", "right", "tie", "skip"]

    _check = field_validator("annotator")(classmethod(lambda cls, v: _annotator(v)))


class UndoPost(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    annotator: str

    _check = field_validator("annotator")(classmethod(lambda cls, v: _annotator(v)))


def _state(store: LabelStore, annotator: str) -> dict[str, Any]:
    """What the page shows ``annotator`` next."""
    pair = store.next_pair(annotator)
    shown = None
    if pair is not None:
        left = left_side(pair.pair_id, annotator)
        left_code, right_code = (pair.a, pair.b) if left == "a" else (pair.b, pair.a)
        marks_left, marks_right = line_diff(left_code, right_code)
        texts = {"task_id": pair.task_id, "prompt": pair.prompt, "left": left_code,
                 "right": right_code}  # fmt: skip
        hidden = {where: hidden_chars(text) for where, text in texts.items()}
        shown = {
            "pair_id": pair.pair_id,
            "task_id": pair.task_id,
            "prompt": pair.prompt,
            "left": {"code": left_code, "marks": marks_left},
            "right": {"code": right_code, "marks": marks_right},
            # Trojan Source: what the page shows marked, and warns about above the pair.
            "hidden": {where: found for where, found in hidden.items() if found["count"]},
        }
    return {
        "annotator": annotator,
        "total": len(store.pairs),
        "done": len(store.done_by(annotator)),
        "pair": shown,
    }


def _label(store: LabelStore, post: LabelPost) -> dict[str, Any]:
    if post.pair_id not in store.by_id:
        raise HTTPException(404, f"pair {post.pair_id!r} is not proposed")
    left = left_side(post.pair_id, post.annotator)
    right: Choice = "b" if left == "a" else "a"
    choice: Choice = {"left": left, "right": right, "tie": "tie"}.get(post.side, "skip")
    made = store.label(post.pair_id, post.annotator, choice)
    return {"label": asdict(made), **_state(store, post.annotator)}


def _undo(store: LabelStore, post: UndoPost) -> dict[str, Any]:
    taken = store.undo(post.annotator)
    return {"undone": asdict(taken) if taken else None, **_state(store, post.annotator)}


async def _answer(work: Callable[[], dict[str, Any]]) -> JSONResponse:
    """``work``'s answer worked out and rendered in a worker thread: a huge pair's diff
    and JSON never hold up the event loop, and so the other annotators."""
    return await run_in_threadpool(lambda: JSONResponse(work()))


def create_app(store: LabelStore, guard: Guard = LOOPBACK) -> FastAPI:
    """The app; ``guard`` says who may call (``Guard.for_bind`` for a served one)."""
    app = FastAPI(title="codealign annotate")
    app.add_middleware(GuardMiddleware, guard=guard)
    page = resources.files("codealign.annotate").joinpath("page.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        # Never inside another site's frame: there its keys would be the page's own calls.
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @app.get("/api/next")
    async def next_pair(annotator: str = Query(...)) -> JSONResponse:
        try:
            name = _annotator(annotator)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return await _answer(partial(_state, store, name))

    @app.post("/api/label")
    async def label(request: Request) -> JSONResponse:
        post: LabelPost = parse_body(LabelPost, await read_body(request, MAX_BODY))
        return await _answer(partial(_label, store, post))

    @app.post("/api/undo")
    async def undo(request: Request) -> JSONResponse:
        post: UndoPost = parse_body(UndoPost, await read_body(request, MAX_BODY))
        return await _answer(partial(_undo, store, post))

    @app.get("/api/agreement")
    async def between() -> JSONResponse:
        return await _answer(lambda: agreement(store.labels()))

    return app
