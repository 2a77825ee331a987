"""The reward server: codealign's verdicts over HTTP, on FastAPI and uvicorn.

- ``POST /get_reward``: OpenRLHF's ``--remote_rm_url`` shape. ``query`` (prompt +
  response, as OpenRLHF decodes it), ``prompts`` and ``labels`` (each naming a task) in;
  ``rewards`` out, with ``scores`` and ``extra_logs`` (pass rates, the held-back tests'
  pass rate) beside them as OpenRLHF's newer versions read.
- ``POST /verify``: task ids and completions (or whole-program solutions) in; each one's
  per-test verdicts, pass rates and, with ``"score": true``, codealign's weighted score.
- ``GET /health``: the task count and the limits.

Every request's batch goes through the one sandbox pool the server holds, concurrently
with the others. A body too large (413), malformed or inconsistent (422) or naming
unknown tasks (404) is refused with the reason before anything runs; the server keeps
serving. Parsing and verifying run in worker threads, never on the event loop, under a
deadline (``request_timeout_s``): past it the client gets a 504 and ``/health`` and the
other clients never wait on a stalled request. Who may call at all (Host, Origin, token,
content type) is ``codealign.web_guard``'s to decide, before any route runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal, TypeVar

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from codealign.errors import InputError
from codealign.prompting import answer_fields
from codealign.rewards.verifier import Answer, UnknownTask, Verdict, Verifier
from codealign.settings.model import HUMAN_EVAL_STOPS
from codealign.web_guard import Guard, GuardMiddleware

T = TypeVar("T")
#: The default guard: loopback Hosts only, same-origin, no token.
LOOPBACK = Guard(open_paths=frozenset({"/health"}))
Reward = Literal["pass_rate", "passed", "score"]


@dataclass(frozen=True)
class ServerLimits:
    """What one request may carry."""

    max_items: int = 1024
    max_body_bytes: int = 16 * 2**20
    max_chars: int = 200_000  # per query, prompt or completion
    request_timeout_s: float = 600.0  # past it: a 504, the verification left to finish


class RewardRequest(BaseModel):
    """OpenRLHF's remote reward model request."""

    model_config = ConfigDict(extra="ignore")  # OpenRLHF versions add fields

    query: list[str]
    prompts: list[str] | None = None
    labels: list[str | int]


class VerifyItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_id: str | int
    completion: str | None = None
    solution: str | None = None

    @model_validator(mode="after")
    def one_answer(self) -> VerifyItem:
        if (self.completion is None) == (self.solution is None):
            raise ValueError("give exactly one of completion and solution")
        return self


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[VerifyItem]
    score: bool = False


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes: a declared
    length is checked before reading, a chunked body while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body of {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise HTTPException(422, f"malformed request: {problems}") from None


def _check_sizes(limits: ServerLimits, count: int, texts: Sequence[str | None]) -> None:
    if count > limits.max_items:
        raise HTTPException(413, f"{count} items in one request; the limit is {limits.max_items}")
    longest = max((len(t) for t in texts if t is not None), default=0)
    if longest > limits.max_chars:
        raise HTTPException(413, f"a text of {longest} characters; the limit is {limits.max_chars}")


def _reward(verdict: Verdict, reward: Reward) -> float:
    if reward == "score":
        return float(verdict.score or 0.0)
    return float(verdict.passed) if reward == "passed" else verdict.pass_rate


async def off_loop(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()`` in a worker thread, the event loop free meanwhile; past ``timeout_s`` a
    504 (the thread is left to finish: the sandbox's own limits end what it runs)."""
    try:
        with anyio.fail_after(timeout_s):
            return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
    except TimeoutError:
        raise HTTPException(
            504, f"the request took over {timeout_s:g} s (the deadline); the server goes on"
        ) from None


def respond(work: Callable[[], dict[str, Any]]) -> JSONResponse:
    """``work``'s answer, rendered (in the caller's thread: a large one takes a while)."""
    return JSONResponse(work())


def _verify(verifier: Verifier, answers: list[Answer], score: bool) -> list[Verdict]:
    try:
        for answer in answers:  # unknown tasks: refused before anything runs
            verifier.resolve(answer.task_id)
    except UnknownTask as exc:
        raise HTTPException(404, str(exc)) from None
    try:
        return verifier.verify(answers, score=score)
    except InputError as exc:
        raise HTTPException(422, str(exc)) from None


def reward_answers(verifier: Verifier, limits: ServerLimits, raw: bytes) -> list[Answer]:
    """OpenRLHF's request as answers: each response cut from its query, and read as a
    completion (a prompt ending in the task's code prompt) or as chat."""
    body: RewardRequest = parse_body(RewardRequest, raw)
    queries, prompts = body.query, body.prompts
    if len({len(queries), len(body.labels), len(prompts or queries)}) > 1:
        raise HTTPException(422, "query, prompts and labels must have the same length")
    _check_sizes(limits, len(queries), [*queries, *(prompts or [])])
    answers = []
    for i, (query, label) in enumerate(zip(queries, body.labels, strict=True)):
        prompt = prompts[i] if prompts is not None else ""
        if not query.startswith(prompt):
            raise HTTPException(422, f"query {i} does not start with its prompt")
        try:
            task = verifier.resolve(label)
        except UnknownTask as exc:
            raise HTTPException(404, f"label {i}: {exc}") from None
        # A prompt ending in the task's code prompt was continued raw; else it is chat.
        continued = bool(prompt) and prompt.rstrip().endswith(task.prompt.rstrip())
        fields = answer_fields(
            task, query[len(prompt) :], chat=not continued, stop=HUMAN_EVAL_STOPS
        )
        answers.append(Answer(task.task_id, fields.get("completion"), fields.get("solution")))
    return answers


def get_reward_body(
    verifier: Verifier, limits: ServerLimits, reward: Reward, raw: bytes
) -> dict[str, Any]:
    verdicts = _verify(verifier, reward_answers(verifier, limits, raw), score=reward == "score")
    rewards = [_reward(v, reward) for v in verdicts]
    return {
        "rewards": rewards,
        "scores": rewards,
        "extra_logs": {
            "pass_rate": [v.pass_rate for v in verdicts],
            "passed": [float(v.passed) for v in verdicts],
            "heldback_pass_rate": [v.heldback_pass_rate for v in verdicts],
        },
    }


def verify_body(verifier: Verifier, limits: ServerLimits, raw: bytes) -> dict[str, Any]:
    body: VerifyRequest = parse_body(VerifyRequest, raw)
    texts = [t for item in body.items for t in (item.completion, item.solution)]
    _check_sizes(limits, len(body.items), texts)
    answers = [Answer(str(i.task_id), i.completion, i.solution) for i in body.items]
    return {"results": [v.to_dict() for v in _verify(verifier, answers, body.score)]}


def create_app(
    verifier: Verifier,
    *,
    reward: Reward = "pass_rate",
    limits: ServerLimits = ServerLimits(),
    guard: Guard = LOOPBACK,
) -> FastAPI:
    """The app: ``uvicorn.run(create_app(verifier), host=..., port=...)``. ``guard``
    says who may call (by default: loopback Hosts, same-origin, no token)."""
    app = FastAPI(title="codealign reward server")
    app.add_middleware(GuardMiddleware, guard=guard)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tasks": len(verifier.tasks), "reward": reward, **asdict(limits)}

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        raw = await read_body(request, limits.max_body_bytes)
        work = partial(get_reward_body, verifier, limits, reward, raw)
        return await off_loop(partial(respond, work), limits.request_timeout_s)

    @app.post("/verify")
    async def verify(request: Request) -> JSONResponse:
        raw = await read_body(request, limits.max_body_bytes)
        work = partial(verify_body, verifier, limits, raw)
        return await off_loop(partial(respond, work), limits.request_timeout_s)

    return app


def serve(
    verifier: Verifier,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    reward: Reward = "pass_rate",
    limits: ServerLimits = ServerLimits(),
    allow_hosts: Sequence[str] = (),
    token: str | None = None,
    tls: dict[str, Any] | None = None,
) -> None:
    """Serve until interrupted; the sandbox pool closes on the way out. ``tls``:
    uvicorn's ``ssl_certfile`` and ``ssl_keyfile``."""
    import uvicorn

    guard = Guard.for_bind(host, allow_hosts, token, open_paths=("/health",))
    app = create_app(verifier, reward=reward, limits=limits, guard=guard)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", **(tls or {}))
    finally:
        verifier.close()
