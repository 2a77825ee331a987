"""What the worker accepts: a job's shape, whole lines, and the candidate's checked replies.

Standard library only (this runs inside the sandbox). Everything the worker reads, from
the host or from a job's process, arrives as one JSON object per line, each line
size-capped (``LineReader``). A reply from the candidate's process must answer the one
call the worker is waiting on, with a kind that call allows (``checked_reply``); it is
rebuilt from its known fields, bounded, and anything else is a ``ProtocolViolation``.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import socket
import stat
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
    """Lines from a non-blocking descriptor, each at most ``limit`` bytes.

    With ``fds`` (from a trusted sender on a unix socket) it also takes the descriptors a
    message carries (``SCM_RIGHTS``), in the order they came (``take_fd``). Without, it
    reads plainly, and the kernel closes any descriptor sent along: an untrusted sender
    can make the reader hold none."""

    def __init__(self, fd: int, limit: int = 1 << 30, *, fds: bool = False) -> None:
        self.fd = fd
        self.limit = limit
        self.buf = b""
        self.eof = False
        self.fds: list[int] = []
        os.set_blocking(fd, False)
        self._sock: socket.socket | None = None
        if fds and stat.S_ISSOCK(os.fstat(fd).st_mode):
            self._sock = socket.socket(fileno=os.dup(fd))

    def fill(self) -> None:
        with contextlib.suppress(BlockingIOError):
            if self._sock is None:
                chunk = os.read(self.fd, 1 << 20)
            else:
                chunk, ancillary, _, _ = self._sock.recvmsg(1 << 20, FD_SPACE)
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds = array.array("i")
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                        self.fds.extend(fds)
            self.eof = not chunk
            self.buf += chunk

    def close(self) -> None:
        """Close the descriptor (and the socket's second reference to it)."""
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def take_fd(self) -> int | None:
        """The first descriptor received and not yet taken (the caller owns it)."""
        return self.fds.pop(0) if self.fds else None

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
            select.select([self.fd], [], [])
            self.fill()


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``, whether or not ``fd`` blocks."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


#: Room for the descriptors one read may carry.
FD_SPACE = socket.CMSG_SPACE(8 * array.array("i").itemsize)


def send_with_fds(fd: int, data: bytes, fds: list[int]) -> None:
    """Write ``data`` to the unix socket ``fd``, ``fds`` riding with its first byte."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        view = memoryview(data)
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
        while view:
            try:
                sent = sock.sendmsg([view], ancillary)
            except BlockingIOError:
                select.select([], [fd], [])
                continue
            view, ancillary = view[sent:], []
    finally:
        sock.close()


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
    "send_with_fds",
    "write_all",
]
