"""Judging outside the candidate's sandbox: the task's tests run in a judge sandbox.

For check, asserts and (``judge: outside``) pytest suites, the task's own test code runs
in a judge worker (``codealign.sandbox.judge_worker``), a sandbox of its own beside the
candidate's, with the candidate's functions bound to proxies there. For each job
codealign's process makes a socket pair and hands one end to each worker with the job:
each call the judge makes then goes straight to the candidate's process and each answer
straight back, as one size-capped JSON line, with no process between them (where a worker
cannot take a descriptor, codealign's process relays the same lines). The verdicts come
back as events that ``judge`` reads like any worker's. No task code, and no value a
candidate returns, is ever run or decoded here.

Whether a task is judged this way is decided from the task alone, by reading its code
(never by running it here, and never from what a candidate does): test code that needs
names only the candidate defines as classes or data (MBPP's ``Pair(...)`` without setup)
runs inside the candidate's sandbox instead. Classes the task's own code defines (setup
code, the prompt) travel by value: rebuilt from the task's definition on each side.
"""

from __future__ import annotations

import ast
import builtins
import functools
import socket
import time
from dataclasses import dataclass
from typing import Any

from codealign.execution.judging.conversation import Conversation, Ended, Session
from codealign.tasks import AssertsSuite, CheckSuite, PytestSuite, Task

#: Time past the judge's own deadline (it kills its job and answers by then) that a judge
#: worker may take to say so before it counts as lost.
JUDGE_REPLY_S = 5.0
#: Mirrors ``codealign.sandbox.judge_worker.GRACE_S``: the judge's time past the candidate's.
JUDGE_GRACE_S = 1.0


@dataclass(frozen=True)
class Plan:
    """How to judge a task outside: its suite kind, the judge's prelude (the code prompt
    or setup code), the names proxied to the candidate, the classes the task defines."""

    kind: str
    prelude: str
    proxied: tuple[str, ...]
    task_types: tuple[str, ...]


def _bound_and_loaded(tree: ast.AST) -> tuple[set[str], set[str]]:
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, loaded


def _top_level(source: str | None, kinds: tuple[type, ...]) -> list[str]:
    if not source:
        return []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return [n.name for n in tree.body if isinstance(n, kinds)]  # type: ignore[attr-defined]


def _star_import(tree: ast.AST) -> bool:
    return any(
        isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
        for n in ast.walk(tree)
    )


@functools.lru_cache(maxsize=4096)
def plan_for(task: Task) -> Plan | None:
    """The outside plan for ``task``, or None when its tests must run inside the sandbox."""
    suite = task.tests
    if isinstance(suite, PytestSuite):
        return Plan("pytest", "", (), ()) if suite.judge == "outside" else None
    if isinstance(suite, CheckSuite):
        kind, prelude = "check", task.prompt if task.prompt_style == "code" else ""
        sources = [suite.code]
    elif isinstance(suite, AssertsSuite):
        kind, prelude = "asserts", suite.setup
        sources = list(suite.asserts)
    else:
        return None
    try:  # read, never run: the task's code runs in the judge's sandbox only
        prelude_tree = ast.parse(prelude)
        trees = [prelude_tree, *(ast.parse(src) for src in sources)]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    bound: set[str] = set()
    loaded: set[str] = set()
    for tree in trees:
        b, ld = _bound_and_loaded(tree)
        bound |= b
        loaded |= ld
    unresolved = loaded - bound - set(dir(builtins)) - {task.entry_point}
    # Other functions the tests call are proxied too when the reference solution shows
    # they are functions; anything else (a class, a constant) needs the candidate's objects.
    helpers = set(_top_level(task.canonical_program(), (ast.FunctionDef, ast.AsyncFunctionDef)))
    if _star_import(prelude_tree):  # names the prelude's ``import *`` may bind stay its own
        unresolved &= helpers
    if not unresolved <= helpers:
        return None
    classes = tuple(_top_level(prelude, (ast.ClassDef,)))
    return Plan(kind, prelude, (task.entry_point, *sorted(unresolved)), classes)


def judge_job(task: Task, plan: Plan, limits: dict[str, Any]) -> dict[str, Any]:
    """What the judge worker runs: the task's side of the job, as plain data."""
    job: dict[str, Any] = {
        "kind": plan.kind,
        "entry_point": task.entry_point,
        "prelude": plan.prelude,
        "proxied": list(plan.proxied),
        "task_types": list(plan.task_types),
        "timeout_s": limits["timeout_s"],
        "memory_mb": max(1024, int(limits.get("memory_mb", 0))),
        "file_size_mb": limits.get("file_size_mb", 64),
    }
    suite = task.tests
    if isinstance(suite, CheckSuite):
        job["test"] = suite.code
    elif isinstance(suite, AssertsSuite):
        job["asserts"] = list(suite.asserts)
    elif isinstance(suite, PytestSuite):
        job.update(files=[list(f) for f in suite.files], module=suite.module)
    return job


def run_judged(
    candidate: Session, judge: Session, task: Task, plan: Plan, payload: dict[str, Any]
) -> dict[str, Any]:
    """Run one job judged in the judge's sandbox; a reply in the shape ``judge`` reads, or
    ``{"lost": True}`` / ``{"lost_judge": True}`` when a worker was lost.

    Where both workers can take a descriptor, the two sandboxes get the two ends of a
    socket made for this job, and the judge's calls go straight to the candidate's
    process (``_direct``); otherwise codealign's process relays each call (``_relayed``)."""
    if candidate.passes_fds and judge.passes_fds:
        return _direct(candidate, judge, task, plan, payload)
    return _relayed(candidate, judge, task, plan, payload)


def _serve_payload(plan: Plan, payload: dict[str, Any]) -> dict[str, Any]:
    """The candidate's side of the job: the program, never the tests."""
    serve = {k: v for k, v in payload.items() if k not in ("test", "asserts", "files")}
    serve.update(mode="outside", handles=plan.kind == "pytest", task_types=list(plan.task_types))
    return serve


def _direct(
    candidate: Session, judge: Session, task: Task, plan: Plan, payload: dict[str, Any]
) -> dict[str, Any]:
    limits = payload["limits"]
    job = {**judge_job(task, plan, limits), "line": True}
    job["reply_bytes"] = 16 * int(limits["max_output_bytes"])  # the worker's own cap
    ours, theirs = socket.socketpair()
    try:  # each end now lives in one sandbox only: this process keeps neither
        # The candidate's side first: forking and loading the program is the longer road.
        sent = candidate.send({**_serve_payload(plan, payload), "line": True}, [theirs.fileno()])
        judged = judge.send({"judge": job}, [ours.fileno()])
    finally:
        ours.close()
        theirs.close()
    if not judged:  # the candidate's process sees its line close, and ends
        if sent:
            candidate.final(limits["timeout_s"])
        return {"lost_judge": True}
    deadline = time.monotonic() + limits["timeout_s"] + JUDGE_GRACE_S + JUDGE_REPLY_S
    result: Any = None
    final: dict[str, Any] | None = None
    while final is None:
        message = judge.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            break
        if message.get("final"):
            final = message
        elif "result" in message:
            result = message["result"]
        elif "call" in message and not judge.send({"answer": {"gone": True}}):
            break  # a call relayed here has no candidate to go to: its line was lost
    # The candidate's process ends once the judge hangs up (or at its deadline).
    reply = candidate.final(limits["timeout_s"]) if sent else None
    if final is None:
        return {"lost_judge": True}
    if reply is None:
        return {"lost": True}
    worker_events = reply.get("events")
    sandbox = [
        e
        for e in (worker_events if isinstance(worker_events, list) else [])
        if isinstance(e, dict) and e.get("t") in ("syntax_error", "error")
    ]
    events = sandbox + _judge_events(result, final)
    return {**reply, "events": events, "judged_outside": True}


def _relayed(
    candidate: Session, judge: Session, task: Task, plan: Plan, payload: dict[str, Any]
) -> dict[str, Any]:
    limits = payload["limits"]
    conversation = Conversation(candidate, time.monotonic() + limits["timeout_s"])
    serve = _serve_payload(plan, payload)
    # Both sides start at once: the judge forks and reads the task's code while the
    # candidate's program loads; its first call waits in the pipe until then.
    if not judge.send({"judge": judge_job(task, plan, limits)}):
        return {"lost_judge": True}
    conversation.start(serve)  # if it fails, every call is answered "gone"
    result: Any = None
    final: dict[str, Any] | None = None
    deadline = conversation.deadline + JUDGE_GRACE_S + JUDGE_REPLY_S
    while final is None:
        message = judge.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            conversation.end()
            return {"lost_judge": True}
        if message.get("final"):
            final = message
        elif "result" in message:
            result = message["result"]
            conversation.close_input()  # the candidate's side winds up meanwhile
        elif "call" in message:
            call = message["call"]
            try:
                answer = conversation.exchange(call if isinstance(call, dict) else {})
            except Ended:
                answer = {"gone": True}
            if time.monotonic() > conversation.deadline:
                answer = {"gone": True}  # too late to count: the run is over
            if not judge.send({"answer": answer}):
                conversation.end()
                return {"lost_judge": True}
    return conversation.finish(_judge_events(result, final))


def _judge_events(result: Any, final: dict[str, Any]) -> list[dict[str, Any]]:
    """The judge's events; when it gave none, why (it never counts as a pass)."""
    if isinstance(result, list):
        return [e for e in result if isinstance(e, dict)]
    if final.get("timed_out"):
        why = "the judge ran past the job's deadline (on values the program returned?)"
    else:
        why = f"the judge stopped without a verdict (exit {final.get('exit_code')})"
    return [{"t": "error", "message": why}]


__all__ = ["Plan", "judge_job", "plan_for", "run_judged"]
