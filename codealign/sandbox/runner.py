"""The in-sandbox worker: runs jobs sent over stdin, one fresh child process per job.

Standard library only: this runs inside the sandbox, started as ``python3 -I -c <bundle>``
(see ``codealign.sandbox.worker_source``). The host writes one JSON job per line to its
stdin and reads one JSON message per line from its stdout.

Trust layout. The worker frames everything the host hears: ready, the final reply,
durations, io outputs and exit codes. It is PID 1 of the sandbox's PID namespace and not
dumpable (``hygiene.harden_worker``), so a job can neither signal it nor open its
descriptors or memory. Each job runs in a forked child that becomes the candidate's
process once the program runs; the child keeps only its own pipes and may only answer
the calls the worker sends it, one JSON line per call. Every answer is size-capped and
checked against the call it answers; anything else is a protocol violation that fails
that job (never the worker, never the run). Before each job the worker checks that the
last one left nothing behind (``hygiene.Leftovers``); what it cannot clear retires it.
The job's process itself is in ``job_process``, the checks on what it says in ``protocol``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

from codealign.sandbox.candidate import describe
from codealign.sandbox.hygiene import Leftovers, remove_tree
from codealign.sandbox.job_process import (
    Capture,
    NotStarted,
    Supervised,
    candidate_main,
    prepare,
    script_main,
)
from codealign.sandbox.protocol import (
    LOAD_REPLIES,
    MAX_TESTS,
    RUN_REPLIES,
    SERVE_REPLIES,
    Job,
    LineReader,
    ProtocolViolation,
    checked_reply,
)
from codealign.sandbox.worker_start import Out, WorkerSettings, start

#: How often the worker checks whether the job's process has exited.
POLL_S = 0.02


# --- running one job -----------------------------------------------------------------------


def _send(out: Out, message: dict[str, Any]) -> None:
    out.write((json.dumps(message) + "\n").encode())


class _Calls:
    """The one call the candidate's process owes an answer to."""

    def __init__(self) -> None:
        self.id: int | None = None
        self.allowed: frozenset[str] = frozenset()

    def ask(
        self, proc: Supervised, call_id: int, op: str, allowed: frozenset[str], **rest: Any
    ) -> None:
        proc.send({**rest, "id": call_id, "op": op})
        self.id, self.allowed = call_id, allowed

    def answer(self, line: bytes) -> dict[str, Any]:
        return checked_reply(line, self.id, self.allowed)


def _forward_calls(host: LineReader, proc: Supervised, calls: _Calls) -> bool:
    """Pass the judge's waiting calls on to the candidate's process; True once the judge
    has ended (it said "end", or nonsense: the candidate's input closes)."""
    while (line := host.pop()) is not None:
        message = json.loads(line)
        call = message.get("call") if type(message) is dict else None
        if type(call) is dict and type(call.get("id")) is int and calls.id is None:
            rest = {k: v for k, v in call.items() if k not in ("id", "op")}
            calls.ask(proc, call["id"], str(call.get("op")), SERVE_REPLIES, **rest)
        else:
            return True
    return False


def run_calls(
    job: Job, isolated: bool, host: LineReader, out: Out, judge_line: int | None = None
) -> dict[str, Any]:
    """A check, asserts or pytest job: load the program, then serve calls or run the suite.

    Served calls come relayed by the host, or, given a ``judge_line`` (a socket whose other end
    the judge's sandbox holds), straight to the candidate's process: the worker then only
    loads the program and watches the process (deadline, output) until the judge is done."""
    limits = job["limits"]
    serve = job.get("mode") == "outside"
    direct = serve and judge_line is not None
    start = time.monotonic()
    deadline = start + limits["timeout_s"]
    stdout, stderr = Capture(limits["max_output_bytes"]), Capture(limits["max_output_bytes"])
    proc = Supervised(
        candidate_main, job, stdout, stderr, 16 * limits["max_output_bytes"], line=judge_line
    )
    calls = _Calls()
    calls.ask(proc, 0, "load", LOAD_REPLIES)
    events: list[dict[str, Any]] = []
    last = time.monotonic()
    ended = not serve  # serve: until the judge says "end" (direct: once loaded)
    relayed = serve and not direct
    timed_out = violation = None
    tests = 0
    try:
        while not stdout.exceeded and not stderr.exceeded and not timed_out:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            if proc.finished:
                break
            listen = [host.fd] if relayed and not ended else []
            woke = proc.poll(min(deadline - now, POLL_S), listen)
            if woke:
                host.fill()
                if host.eof:
                    ended = True
            if relayed and not ended:
                ended = _forward_calls(host, proc, calls)
            if ended and calls.id is None:
                proc.close_input()
            while (line := proc.replies.pop()) is not None:
                if time.monotonic() >= deadline:  # a reply finished too late is not read
                    timed_out = True
                    break
                reply = calls.answer(line)
                kind = reply["t"]
                now = time.monotonic()
                if kind == "ok" and direct:
                    calls.id = None
                    ended = True  # the judge's calls now go straight to the process
                elif kind == "ok" and serve:
                    calls.id = None
                    _send(out, {"event": {"t": "ready"}})
                elif kind == "ok":
                    calls.ask(proc, 1, "run", RUN_REPLIES)
                elif kind == "test":
                    tests += 1
                    if tests > MAX_TESTS:
                        raise ProtocolViolation(f"more than {MAX_TESTS} tests")
                    events.append({**reply, "duration": round(now - last, 6)})
                elif relayed:
                    calls.id = None
                    _send(out, {"event": reply})
                else:
                    calls.id = None
                    events.append(reply)
                last = now
                if kind in ("syntax_error", "error", "task_error", "done"):
                    calls.id = None
                    ended = True
                    proc.close_input()
    except ProtocolViolation as exc:
        violation = str(exc)
    duration = time.monotonic() - start
    if not timed_out and violation is None and not (stdout.exceeded or stderr.exceeded):
        timed_out = not proc.wait_exit(deadline)
    proc.close(isolated)
    if relayed:  # calls the judge sent after the end are answered by this final reply
        with contextlib.suppress(ProtocolViolation):
            while not ended and (line := host.pop()) is not None:
                ended = "call" not in json.loads(line)
    return {
        "final": True,
        "events": events,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "timed_out": bool(timed_out),
        "output_exceeded": stdout.exceeded or stderr.exceeded,
        "exit_code": proc.exit_code,
        "duration": duration,
        "violation": violation,
    }


def run_io(job: Job, isolated: bool) -> dict[str, Any]:
    """An io job: each input in a process of its own; the worker captures what it prints."""
    limits = job["limits"]
    limit = limits["max_output_bytes"]
    start = time.monotonic()
    deadline = start + limits["timeout_s"]
    stderr = Capture(limit)
    events: list[dict[str, Any]] = []
    timed_out = False
    exit_code: int | None = None
    for index, stdin_text in enumerate(job.get("inputs", [])):
        stdout = Capture(limit, keep=limit)
        proc = Supervised(script_main, job, stdout, stderr, 4096, stdin_text.encode())
        syntax = None
        while not proc.finished and not stdout.exceeded and not stderr.exceeded:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                break
            proc.poll(min(deadline - now, POLL_S), [])
        with contextlib.suppress(ProtocolViolation):
            if (line := proc.replies.pop()) is not None:
                syntax = checked_reply(line, 0, frozenset({"syntax_error"}))
        if not timed_out and not stdout.exceeded and not stderr.exceeded:
            timed_out = not proc.wait_exit(deadline)
        proc.close(isolated)
        exit_code = proc.exit_code
        if syntax is not None:
            events = [syntax]
            break
        if timed_out or stderr.exceeded:
            break
        events.append(
            {
                "t": "io",
                "index": index,
                "exit": exit_code,
                "overflow": stdout.exceeded,
                "stdout": stdout.text(),
            }
        )
    else:
        events.append({"t": "done"})
    return {
        "final": True,
        "events": events,
        "stdout": "",
        "stderr": stderr.text(),
        "timed_out": timed_out,
        "output_exceeded": stderr.exceeded,
        "exit_code": exit_code,
        "duration": time.monotonic() - start,
        "violation": None,
    }


def run_job(job: Job, workdir: str, isolated: bool, host: LineReader, out: Out) -> dict[str, Any]:
    """Run one job in a fresh folder of its own (with the judge's line, when it has one)."""
    line = host.take_fd() if job.get("line") else None
    try:
        if job.get("line") and line is None:
            raise NotStarted("the job's line to its judge did not arrive")
        jobdir = os.path.join(workdir, f"job-{time.monotonic_ns()}")
        try:
            os.mkdir(jobdir, 0o700)
            os.chdir(jobdir)
        except OSError as exc:  # a broken sandbox, never the job's fault: run it elsewhere
            raise NotStarted(f"no folder for the job: {exc}") from None
        try:
            if job.get("kind") == "io":
                return run_io(job, isolated)
            taken, line = line, None  # Supervised closes it
            return run_calls(job, isolated, host, out, taken)
        finally:
            os.chdir("/")
            remove_tree(jobdir)  # the job's processes are gone: its folder goes now
    finally:
        for fd in [*([line] if line is not None else []), *host.fds]:
            with contextlib.suppress(OSError):
                os.close(fd)  # never one job's line in the next
        host.fds.clear()


# --- the worker ----------------------------------------------------------------------------


def _failed(exc: BaseException) -> dict[str, Any]:
    return {
        "final": True,
        "events": [],
        "not_started": isinstance(exc, NotStarted),
        "worker_error": describe(exc),
    }


def worker(settings: WorkerSettings) -> None:
    host, proto_out, _, isolated, workdir, folders = start(settings, "worker")
    leftovers = Leftovers(workdir, settings.get("scratch", []), settings.get("keep", []), isolated)
    prepare()  # what each job's process would otherwise make for itself
    pytest_loaded = checked = False
    proto_out.write(b'{"ready": true}\n')
    while (line := host.wait_line()) is not None:
        job: Job = json.loads(line)
        if "limits" not in job:
            continue  # an "end" or a call that crossed the last job's final reply
        if job.get("kind") == "pytest" and not pytest_loaded:
            # Import pytest once here so each forked job gets it warm.
            with contextlib.suppress(ImportError):
                import pytest  # noqa: F401
            pytest_loaded = True
        # After a job the worker checks (and retires if anything is left), and nothing runs
        # between jobs: only the sandbox's first job needs the check here.
        found = [] if checked else leftovers.find()
        if found:
            leftovers.clear()
            found = leftovers.find()
        checked = True
        if not folders.restore():
            found = [*found, "a broken job folder"]
        if found:  # never run a job in a sandbox another job has touched
            reply = _failed(NotStarted("left by an earlier job: " + ", ".join(found)))
            reply["retire"] = True
            proto_out.write((json.dumps(reply) + "\n").encode())
            return
        try:
            reply = run_job(job, workdir, isolated, host, proto_out)
            if leftovers.find():  # most jobs leave nothing: the check alone is cheaper
                leftovers.clear()
                clean = not leftovers.find()
            else:
                clean = True
        except BaseException as exc:  # never leave the host waiting: answer, then retire
            reply = _failed(exc)
            clean = False
        reply["retire"] = not clean
        proto_out.write((json.dumps(reply) + "\n").encode())
        if not clean:  # the pool starts a fresh sandbox instead of reusing a dirty one
            return


def main(argv: list[str]) -> None:
    """``worker SETTINGS_JSON``: scratch folders are emptied after every job, except the
    read-only mounts listed in keep."""
    if len(argv) == 2 and argv[0] == "worker":
        worker(json.loads(argv[1]))
    elif len(argv) == 2 and argv[0] == "judge":
        from codealign.sandbox.judge_worker import worker as judge_worker

        judge_worker(json.loads(argv[1]))
    else:
        sys.exit("usage: runner worker|judge SETTINGS_JSON")


__all__ = ["main", "run_calls", "run_io", "run_job", "worker"]
