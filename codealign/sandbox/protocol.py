"""What the worker accepts: a job's shape, whole lines, and the candidate's checked replies.

Standard library only (this runs inside the sandbox). Everything the worker reads, from
the host or from a job's process, arrives as one JSON object per line, each line
size-capped (``LineReader``). A reply from the candidate's process must answer the one
call the worker is waiting on, with a kind that call allows (``checked_reply``); it is
rebuilt from its known fields, bounded, and anything else is a ``ProtocolViolation``.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
from typing import Any, TypedDict

from codealign.sandbox.candidate import CandidateJob

# --- what the host sends -----------------------------------------------------------------

#: Tests one inside-judged job may report.
MAX_TESTS = 10_000
NAME_CHARS = 300
TEST_STATUSES = frozenset({"passed", "failed", "error", "timeout", "skipped", "not_run"})


class JobLimits(TypedDict):
    timeout_s: float
    memory_mb: int
    file_size_mb: int
    max_output_bytes: int
    max_processes: int


class Job(CandidateJob, total=False):
    """One job as the host sends it (``mode``: "outside" serves calls, "inside" runs tests)."""

    inputs: list[str]
    limits: JobLimits


class ProtocolViolation(Exception):
    """The candidate's process said something that answers no call."""


# --- what the worker accepts from the candidate's process --------------------------------

#: Reply kinds per call: a reply of another kind, or to no call, is a violation.
LOAD_REPLIES = frozenset({"ok", "syntax_error", "error"})
RUN_REPLIES = frozenset({"test", "done", "task_error", "error"})
SERVE_REPLIES = frozenset({"ret", "raise", "bad_value"})


def checked_reply(line: bytes, call_id: int | None, allowed: frozenset[str]) -> dict[str, Any]:
    """The reply in ``line``, rebuilt from its known fields; raises ProtocolViolation."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        raise ProtocolViolation("an unreadable message") from None
    if type(raw) is not dict:
        raise ProtocolViolation("a message that is not an object")
    if call_id is None or raw.get("id") != call_id or type(raw.get("id")) is not int:
        raise ProtocolViolation("a message that answers no call")
    kind = raw.get("t")
    if kind not in allowed:
        raise ProtocolViolation(f"a message of kind {str(kind)[:40]!r} where none was asked")
    reply: dict[str, Any] = {"id": call_id, "t": kind}

    def text(key: str, limit: int) -> str:
        value = raw.get(key, "")
        if type(value) is not str:
            raise ProtocolViolation(f"a {key} that is not text")
        return value[:limit]

    if kind in ("syntax_error", "error", "task_error", "raise", "bad_value", "test"):
        reply["message"] = text("message", NAME_CHARS)
    if kind == "raise":
        reply["type"] = text("type", 100)
    if kind == "test":
        reply["name"] = text("name", NAME_CHARS)
        if raw.get("status") not in TEST_STATUSES:
            raise ProtocolViolation("a test with an unknown status")
        reply["status"] = raw["status"]
    if kind == "ret":  # plain data, decoded (and bounded) by the judge
        reply["value"] = raw.get("value")
        if "args" in raw:
            reply["args"] = raw["args"]
        if "files" in raw:
            reply["files"] = raw["files"]
    return reply


# --- whole lines, from the host or from a job's process ----------------------------------


class LineReader:
    """Lines from a non-blocking descriptor, each at most ``limit`` bytes."""

    def __init__(self, fd: int, limit: int = 1 << 30) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def fill(self) -> None:
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(self.fd, 1 << 20)
            self.eof = not chunk
            self.buf += chunk

    def pop(self) -> bytes | None:
        line, sep, rest = self.buf.partition(b"\n")
        if not sep:
            if len(self.buf) > self.limit:
                raise ProtocolViolation(f"a message over {self.limit} bytes")
            return None
        if len(line) > self.limit:
            raise ProtocolViolation(f"a message over {self.limit} bytes")
        self.buf = rest
        return line

    def wait_line(self) -> bytes | None:
        """Block until a whole line (None at end of input)."""
        while True:
            line = self.pop()
            if line is not None or self.eof:
                return line
            sel = selectors.DefaultSelector()
            sel.register(self.fd, selectors.EVENT_READ)
            sel.select()
            sel.close()
            self.fill()


__all__ = [
    "LOAD_REPLIES",
    "MAX_TESTS",
    "NAME_CHARS",
    "RUN_REPLIES",
    "SERVE_REPLIES",
    "TEST_STATUSES",
    "Job",
    "JobLimits",
    "LineReader",
    "ProtocolViolation",
    "checked_reply",
]
