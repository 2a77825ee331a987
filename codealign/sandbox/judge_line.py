"""The judge's line to the candidate's process, one per job: direct or relayed.

Standard library only (this runs in the judge's sandbox). ``Direct``: a socket whose other
end is in the candidate's process, made by codealign's process for this one job; no
process stands between the two, so what the candidate says is checked here. ``Relayed``:
codealign's process carries each call and answer, for workers that cannot take a
descriptor. Either way ``exchange`` gives the answer to one call, or None once the
candidate's run is over.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from codealign.sandbox.protocol import (
    SERVE_REPLIES,
    LineReader,
    ProtocolViolation,
    checked_reply,
    write_all,
)


class Relayed:
    """Calls relayed by codealign's process, over the judge worker's own line to it."""

    violation: str | None = None

    def __init__(self, host: LineReader, write: Callable[[dict[str, Any]], None]) -> None:
        self._host, self._write = host, write

    def exchange(self, call: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to ``call``; None once the candidate's run is over."""
        self._write({"call": call})
        line = self._host.wait_line()
        message = json.loads(line) if line else None
        answer = message.get("answer") if isinstance(message, dict) else None
        return answer if isinstance(answer, dict) and not answer.get("gone") else None


class Direct:
    """Calls straight into the candidate's process, over a socket codealign's process made
    for this one job and handed one end to each sandbox: no process stands between them,
    so the candidate's answers are checked here, as its worker checks them when it relays
    (one line each, size-capped, answering the call asked, rebuilt from known fields)."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd = fd
        self._reader = LineReader(fd, limit)
        self._calls = 0
        self.violation: str | None = None

    def exchange(self, call: dict[str, Any]) -> dict[str, Any] | None:
        self._calls += 1
        try:
            write_all(self.fd, (json.dumps({**call, "id": self._calls}) + "\n").encode())
            line = self._reader.wait_line()
            return None if line is None else checked_reply(line, self._calls, SERVE_REPLIES)
        except ProtocolViolation as exc:
            self.violation = str(exc)
        except OSError:  # the candidate's process is gone (closed, killed at its deadline)
            pass
        return None

    def close(self) -> None:
        """Hang up: the candidate's process sees the end of its calls and exits."""
        self._reader.close()


__all__ = ["Direct", "Relayed"]
