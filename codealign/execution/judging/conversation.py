"""One job judged outside with its calls relayed by codealign's process (for workers that
cannot take a descriptor): the judge's calls into the candidate's process, over a worker.

The worker loads the program, says ``ready``, forwards each call to the candidate's
process and returns its answer (checked against the call). codealign's process only
relays: the judge, in a sandbox of its own, decodes every value with bounded plain-data
decoding, so what it gets is data of exact built-in types, never an object whose
methods the candidate wrote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol


class Session(Protocol):
    """What judging needs of one job's conversation with a worker (the worker pool's
    ``Session`` is one): judging never knows how the worker was started."""

    @property
    def passes_fds(self) -> bool:
        """Whether ``send`` may hand the worker descriptors."""
        ...

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> bool: ...

    def receive(self, timeout: float) -> dict[str, Any] | None: ...

    def final(self, timeout: float) -> dict[str, Any] | None: ...


class Ended(BaseException):
    """The candidate's run ended (timeout, crash, exit) while a call was pending."""


class Conversation:
    """Calls into one job's candidate process; collects the worker's events for it."""

    def __init__(self, session: Session, deadline: float) -> None:
        self.session = session
        self.deadline = deadline
        self.events: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self.ready = False
        self.calls = 0
        self._ending = False

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

    def close_input(self) -> None:
        """Tell the worker no more calls come (it winds the job up meanwhile)."""
        if self.final is None and not self._ending:
            self._ending = True
            self.session.send({"end": True})

    def end(self) -> dict[str, Any]:
        """Close the candidate's input and wait for the worker's final reply."""
        if self.final is None:
            self.close_input()
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
