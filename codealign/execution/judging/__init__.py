"""Judging: what a job sends a sandbox (``judge``), whether a task's tests run in the
judge's sandbox and how the two sandboxes talk (``outside``, ``conversation``), and
turning what comes back into a result (``judge``). Nothing here knows how a worker is
started: a worker's session is a protocol (``conversation.Session``)."""
