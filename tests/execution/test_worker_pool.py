"""The worker pool's own choices: which idle worker a session gets, what a worker's line
can carry."""

from __future__ import annotations

import sys

from codealign.execution.worker_pool import Launch, WorkerPool

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
