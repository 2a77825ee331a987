"""The reward server under load against calling the sandbox pool directly: requests per
second and latency percentiles, the same requests from the same number of clients.

Each request is ``--batch`` answers to HumanEval tasks (their canonical solutions, so
every one runs its whole test suite); ``--clients`` threads send ``--requests`` requests
in all, first straight to a ``Verifier`` in this process, then as OpenRLHF's
``POST /get_reward`` to ``codealign serve``'s app on loopback (uvicorn, one process),
over the same kind of pool (``--workers`` sandboxes). Usage:

    python benchmarks/bench_serve.py [--requests 64] [--batch 8] [--clients 8]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from codealign.rewards.server import create_app
from codealign.rewards.verifier import Answer, Verifier
from codealign.settings.execution import ExecutionConfig
from codealign.tasks import Task, load_tasks


def timed(call: Callable[[int], None], total: int, clients: int) -> tuple[float, list[float]]:
    """Wall time of ``total`` calls from ``clients`` threads, and each call's latency."""
    latencies: list[float] = []

    def one(k: int) -> None:
        start = time.perf_counter()
        call(k)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(total)))
    return time.perf_counter() - start, latencies


def row(name: str, wall: float, latencies: list[float], total: int, batch: int) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (f"{name:22} {total / wall:8.1f} {total * batch / wall:10.1f} "
            f"{q[49] * 1000:8.0f} {q[89] * 1000:8.0f} {q[98] * 1000:8.0f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="answers per request")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers")
    parser.add_argument("--sandbox", default="bwrap")
    args = parser.parse_args()
    import uvicorn

    tasks = load_tasks("humaneval")

    def batch_of(k: int) -> list[Task]:
        return [tasks[(k * args.batch + j) % len(tasks)] for j in range(args.batch)]

    execution = ExecutionConfig(sandbox=args.sandbox, workers=args.workers)
    verifier = Verifier(tasks, execution=execution)
    verifier.verify([Answer(tasks[0].task_id, tasks[0].canonical_solution)])  # pool up

    def direct(k: int) -> None:
        verdicts = verifier.verify([Answer(t.task_id, t.canonical_solution) for t in batch_of(k)])
        assert all(v.passed for v in verdicts)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(verifier), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    session = threading.local()

    def http(k: int) -> None:
        if not hasattr(session, "s"):
            session.s = requests.Session()
        chosen = batch_of(k)
        body = {
            "query": [t.prompt + (t.canonical_solution or "") for t in chosen],
            "prompts": [t.prompt for t in chosen],
            "labels": [t.task_id for t in chosen],
        }
        response = session.s.post(f"{url}/get_reward", json=body, timeout=300)
        response.raise_for_status()
        assert response.json()["rewards"] == [1.0] * len(chosen)

    direct_wall, direct_lat = timed(direct, args.requests, args.clients)
    http_wall, http_lat = timed(http, args.requests, args.clients)
    server.should_exit = True
    verifier.close()
    print(f"{args.requests} requests of {args.batch} HumanEval answers, {args.clients} clients, "
          f"{args.workers} {args.sandbox} workers")  # fmt: skip
    print(f"{'path':22} {'req/s':>8} {'answers/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    print(row("Verifier, in process", direct_wall, direct_lat, args.requests, args.batch))
    print(row("HTTP /get_reward", http_wall, http_lat, args.requests, args.batch))
    added = (statistics.median(http_lat) - statistics.median(direct_lat)) * 1000
    print(f"server / direct throughput: {direct_wall / http_wall:.2f}x; "
          f"median latency added: {added:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
