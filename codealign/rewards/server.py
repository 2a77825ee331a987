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
serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from codealign.errors import InputError
from codealign.prompting import answer_fields
from codealign.rewards.verifier import Answer, UnknownTask, Verdict, Verifier
from codealign.settings.model import HUMAN_EVAL_STOPS

Reward = Literal["pass_rate", "passed", "score"]


@dataclass(frozen=True)
class ServerLimits:
    """What one request may carry."""

    max_items: int = 1024
    max_body_bytes: int = 16 * 2**20
    max_chars: int = 200_000  # per query, prompt or completion


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


def create_app(
    verifier: Verifier, *, reward: Reward = "pass_rate", limits: ServerLimits = ServerLimits()
) -> FastAPI:
    """The app: ``uvicorn.run(create_app(verifier), host=..., port=...)``."""
    app = FastAPI(title="codealign reward server")

    async def run(answers: list[Answer], score: bool) -> list[Verdict]:
        try:
            for answer in answers:  # unknown tasks: refused before anything runs
                verifier.resolve(answer.task_id)
        except UnknownTask as exc:
            raise HTTPException(404, str(exc)) from None
        try:
            return await run_in_threadpool(verifier.verify, answers, score=score)
        except InputError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tasks": len(verifier.tasks), "reward": reward, **asdict(limits)}

    @app.post("/get_reward")
    async def get_reward(request: Request) -> JSONResponse:
        raw = await read_body(request, limits.max_body_bytes)
        body: RewardRequest = parse_body(RewardRequest, raw)
        prompts = body.prompts
        lengths = {len(body.query), len(body.labels), len(prompts or body.query)}
        if len(lengths) > 1:
            raise HTTPException(422, "query, prompts and labels must have the same length")
        _check_sizes(limits, len(body.query), [*body.query, *(prompts or [])])
        answers = []
        for i, (query, label) in enumerate(zip(body.query, body.labels, strict=True)):
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
        verdicts = await run(answers, score=reward == "score")
        rewards = [_reward(v, reward) for v in verdicts]
        return JSONResponse(
            {
                "rewards": rewards,
                "scores": rewards,
                "extra_logs": {
                    "pass_rate": [v.pass_rate for v in verdicts],
                    "passed": [float(v.passed) for v in verdicts],
                    "heldback_pass_rate": [v.heldback_pass_rate for v in verdicts],
                },
            }
        )

    @app.post("/verify")
    async def verify(request: Request) -> JSONResponse:
        raw = await read_body(request, limits.max_body_bytes)
        body: VerifyRequest = parse_body(VerifyRequest, raw)
        texts = [t for item in body.items for t in (item.completion, item.solution)]
        _check_sizes(limits, len(body.items), texts)
        answers = [Answer(str(i.task_id), i.completion, i.solution) for i in body.items]
        verdicts = await run(answers, score=body.score)
        return JSONResponse({"results": [v.to_dict() for v in verdicts]})

    return app


def serve(
    verifier: Verifier,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    reward: Reward = "pass_rate",
    limits: ServerLimits = ServerLimits(),
) -> None:
    """Serve until interrupted; the sandbox pool closes on the way out."""
    import uvicorn

    try:
        uvicorn.run(create_app(verifier, reward=reward, limits=limits), host=host, port=port,
                    log_level="warning")  # fmt: skip
    finally:
        verifier.close()
