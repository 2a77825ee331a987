"""The worker pool's own choices: which idle worker a session gets, what a worker's line
can carry."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codealign.execution.backends.worker_pool import (
    Launch,
    SandboxStartError,
    WorkerPool,
    start_together,
)

#: A worker that says it is ready and then waits for its input to end.
IDLE = [
    sys.executable,
    "-c",
    "import sys; print('{\"ready\": true}', flush=True); sys.stdin.read()",
]


def test_a_session_prefers_the_worker_that_served_its_affinity() -> None:
    pool = WorkerPool(IDLE, {}, 3)
    try:
        seen = {}
        with pool.session("a") as a, pool.session("b") as b, pool.session("c") as c:
            seen = {"a": a._worker, "b": b._worker, "c": c._worker}
        assert len({id(w) for w in seen.values()}) == 3
        for key in ("b", "a", "c", "b"):
            with pool.session(key) as again:
                assert again._worker is seen[key]
        with pool.session("new") as other:  # no match: any idle worker, none is started
            assert other._worker in seen.values()
    finally:
        pool.close()


def test_only_a_socket_line_carries_descriptors() -> None:
    local = WorkerPool(IDLE, {}, 1)
    piped = WorkerPool(lambda: Launch(list(IDLE), socket_stdio=False), {}, 1)
    try:
        with local.session() as s:
            assert s.passes_fds
        with piped.session() as s:
            assert not s.passes_fds
            assert not s.send({"judge": {}}, [0])  # refused, never sent without it
    finally:
        local.close()
        piped.close()


def _gated(gate: str) -> list[str]:
    """A worker that says it is ready only once ``gate`` exists (and gives up after 20 s)."""
    code = (
        "import os, sys, time\n"
        "end = time.monotonic() + 20\n"
        f"while not os.path.exists({gate!r}):\n"
        "    if time.monotonic() > end: sys.exit(1)\n"
        "    time.sleep(0.01)\n"
        "print('{\"ready\": true}', flush=True); sys.stdin.read()\n"
    )
    return [sys.executable, "-c", code]


def test_pools_start_side_by_side(tmp_path: Path) -> None:
    # Neither pool waits for its first worker when made: both are starting at once, and
    # start_together then finds both ready. (A pool that waited would give up at the gate.)
    gate = tmp_path / "open"
    spawned: list[str] = []

    def launch(name: str) -> Callable[[], list[str]]:
        def argv() -> list[str]:
            spawned.append(name)
            return _gated(str(gate))

        return argv

    candidates = WorkerPool(launch("candidate"), {}, 2, wait=False)
    judges = WorkerPool(launch("judge"), {}, 2, wait=False)
    try:
        gate.touch()
        start_together(candidates, judges)
        with candidates.session():  # the worker already started, not a fresh one
            pass
        assert sorted(spawned) == ["candidate", "judge"]
    finally:
        candidates.close()
        judges.close()


def test_pools_that_start_together_fail_together() -> None:
    fine = WorkerPool(IDLE, {}, 1, wait=False)
    broken = WorkerPool(
        [sys.executable, "-c", "raise SystemExit('no sandbox here')"], {}, 1, wait=False
    )
    with pytest.raises(SandboxStartError, match="no sandbox here"):
        start_together(fine, broken)
    assert fine._all == [] and broken._all == []  # closed: the started worker was stopped
