"""One job judged outside: the judge's calls into the candidate's process, over a worker.

The worker loads the program, says ``ready``, forwards each call to the candidate's
process and returns its answer (checked against the call); the judge decodes every
value with bounded plain-data decoding, so what comes back is data of exact built-in
types, never an object whose methods the candidate wrote.
"""

from __future__ import annotations

import builtins
import time
from typing import Any

from codealign.execution.worker_pool import Session
from codealign.sandbox.candidate import short
from codealign.sandbox.plain_data import (
    HandleMaker,
    HandleReader,
    Malformed,
    Unserializable,
    decode,
    encode,
)


class Ended(BaseException):
    """The candidate's run ended (timeout, crash, exit) while a call was pending."""


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one, or answered nonsense."""


class NotPlainData(Exception):
    """The test hands the candidate a value that cannot cross into the sandbox."""


def rebuild_exception(name: str, message: str) -> Exception:
    """The candidate's exception as a judge-side exception of the same built-in type."""
    cls = getattr(builtins, name, None)
    text = message.partition(": ")[2] if message.startswith(name) else message
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(text)
        except Exception:
            pass
    return CandidateError(message)


class Conversation:
    """Calls into one job's candidate process; collects the worker's events for it."""

    def __init__(self, session: Session, deadline: float) -> None:
        self.session = session
        self.deadline = deadline
        self.events: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.ready = False
        self.calls = 0

    def start(self, payload: dict[str, Any]) -> bool:
        """Send the job; True once the worker says the program is loaded."""
        if not self.session.send(payload):
            self.final = {"lost": True}
            return False
        while (event := self.next_event()) is not None:
            if event.get("t") == "ready":
                self.ready = True
                return True
        return False

    def next_event(self) -> dict[str, Any] | None:
        """The worker's next event for this job; None once the job has ended."""
        while self.final is None:
            message = self.session.receive(max(0.0, self.deadline - time.monotonic()))
            if message is None:
                self.final = {"lost": True}
            elif message.get("final"):
                self.final = message
            elif isinstance(event := message.get("event"), dict):
                self.events.append(event)
                return event
        return None

    def exchange(self, call: dict[str, Any]) -> dict[str, Any]:
        """Send one encoded call; its answer (``ret``, ``raise`` or ``bad_value``).

        Raises Ended when the candidate's run ended first."""
        self.calls += 1
        if self.final is not None or not self.session.send({"call": {**call, "id": self.calls}}):
            raise Ended
        while (event := self.next_event()) is not None:
            if event.get("id") == self.calls:
                return event
        raise Ended

    def request(
        self,
        op: str,
        target: list[Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        maker: HandleMaker | None = None,
        reader: HandleReader | None = None,
    ) -> Any:
        """Apply ``op`` to ``target`` in the candidate's process; the result as plain data.

        Lists, dicts and sets passed as arguments mirror in-place changes the candidate
        made to them, as they would in one process."""
        try:
            call = {
                "op": op,
                "target": target,
                "args": encode(args, maker),
                "kwargs": encode(kwargs or {}, maker),
            }
        except Unserializable as exc:
            raise NotPlainData(f"the test passes a value the sandbox cannot take: {exc}") from None
        answer = self.exchange(call)
        return self.value_of(answer, args, reader)

    @staticmethod
    def value_of(
        answer: dict[str, Any], args: tuple[Any, ...] = (), reader: HandleReader | None = None
    ) -> Any:
        kind = answer.get("t")
        if kind == "raise":
            raise rebuild_exception(str(answer.get("type")), str(answer.get("message", "")))
        if kind != "ret":
            message = short(str(answer.get("message", "")))
            raise CandidateError(f"returned something that is not plain data: {message}")
        try:
            value = decode(answer.get("value"), reader)
            after = decode(answer["args"], reader) if "args" in answer else None
        except Malformed as exc:
            raise CandidateError(f"returned malformed or oversized data: {exc}") from None
        _copy_back(args, after)
        return value

    def end(self) -> dict[str, Any]:
        """Close the candidate's input and wait for the worker's final reply."""
        if self.final is None:
            self.session.send({"end": True})
            while self.next_event() is not None:
                pass
        assert self.final is not None
        return self.final

    def finish(self, host_events: list[dict[str, Any]]) -> dict[str, Any]:
        """The reply ``judge`` reads: the worker's own failures plus the judge's verdicts."""
        final = self.end()
        if final.get("lost"):
            return {"lost": True}
        sandbox = [e for e in self.events if e.get("t") in ("syntax_error", "error")]
        return {**final, "events": sandbox + host_events, "judged_outside": True}


def _copy_back(args: tuple[Any, ...], after: Any) -> None:
    """Mirror in-place changes the candidate made to list, dict and set arguments."""
    if type(after) is not tuple or len(after) != len(args):
        return
    for mine, theirs in zip(args, after, strict=True):
        if type(mine) is list and type(theirs) is list:
            mine[:] = theirs
        elif (type(mine) is dict and type(theirs) is dict) or (
            type(mine) is set and type(theirs) is set
        ):
            mine.clear()
            mine.update(theirs)
