"""The labelling page's server (FastAPI): the page itself, and a small JSON API.

- ``GET /``: the page (one HTML file with its script and styles inline: no build step);
- ``GET /api/next?annotator=NAME``: progress and the next pair, sides and diff marks set;
- ``POST /api/label``: ``{"annotator", "pair_id", "side": left | right | tie | skip}``;
- ``POST /api/undo``: ``{"annotator"}`` takes back that annotator's latest label;
- ``GET /api/agreement``: agreement between annotators.

A malformed post gets a 422 and a label for a pair that is not proposed a 404, with the
reason; nothing is written then.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from importlib import resources
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, field_validator

from codealign.annotate.store import Choice, LabelStore, agreement, left_side, line_diff
from codealign.rewards.server import parse_body, read_body

_NAME = re.compile(r"^[\w .@+-]{1,64}$")
MAX_BODY = 64 * 1024


def _annotator(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError("annotator: 1 to 64 letters, digits, spaces or . _ @ + -")
    return name


class LabelPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotator: str
    pair_id: str
    side: Literal["left", "right", "tie", "skip"]

    _check = field_validator("annotator")(classmethod(lambda cls, v: _annotator(v)))


class UndoPost(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        shown = {
            "pair_id": pair.pair_id,
            "task_id": pair.task_id,
            "prompt": pair.prompt,
            "left": {"code": left_code, "marks": marks_left},
            "right": {"code": right_code, "marks": marks_right},
        }
    return {
        "annotator": annotator,
        "total": len(store.pairs),
        "done": len(store.done_by(annotator)),
        "pair": shown,
    }


def create_app(store: LabelStore) -> FastAPI:
    app = FastAPI(title="codealign annotate")
    page = resources.files("codealign.annotate").joinpath("page.html").read_text("utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/next")
    async def next_pair(annotator: str = Query(...)) -> dict[str, Any]:
        try:
            return _state(store, _annotator(annotator))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/api/label")
    async def label(request: Request) -> dict[str, Any]:
        post: LabelPost = parse_body(LabelPost, await read_body(request, MAX_BODY))
        if post.pair_id not in store.by_id:
            raise HTTPException(404, f"pair {post.pair_id!r} is not proposed")
        left = left_side(post.pair_id, post.annotator)
        right: Choice = "b" if left == "a" else "a"
        choice: Choice = {"left": left, "right": right, "tie": "tie"}.get(post.side, "skip")
        made = store.label(post.pair_id, post.annotator, choice)
        return {"label": asdict(made), **_state(store, post.annotator)}

    @app.post("/api/undo")
    async def undo(request: Request) -> dict[str, Any]:
        post: UndoPost = parse_body(UndoPost, await read_body(request, MAX_BODY))
        taken = store.undo(post.annotator)
        return {"undone": asdict(taken) if taken else None, **_state(store, post.annotator)}

    @app.get("/api/agreement")
    async def between() -> dict[str, Any]:
        return agreement(store.labels())

    return app
