"""Execution through a Ray cluster against one local pool with the same total workers:
what going through Ray costs per job.

A simulated 2-node cluster on this machine (``ray.cluster_utils.Cluster``: a head without
CPUs and two nodes of ``--cpus`` CPUs each, a pool of that many sandbox workers on each)
runs HumanEval's canonical solutions ``--copies`` times; so does one local pool of
2 x ``--cpus`` workers. Usage (``pip install -e ".[ray]"``):

    python benchmarks/bench_ray.py [--copies 3] [--cpus 1] [--sandbox bwrap]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from codealign.execution import ExecutionConfig, execute_samples, make_executor
from codealign.samples import canonical_samples, sample_from_record
from codealign.tasks import load_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=1, help="CPUs (= workers) per node")
    parser.add_argument("--sandbox", default="bwrap")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    tasks = {t.task_id: t for t in load_tasks("humaneval")}
    records = [s.record for s in canonical_samples(tasks)] * args.copies
    samples = [sample_from_record(r, i, i // len(tasks)) for i, r in enumerate(records)]
    workers = 2 * args.cpus

    local = ExecutionConfig(sandbox=args.sandbox, workers=workers)
    execute_samples(tasks, samples[:workers], local, progress=False)  # warm the sandbox
    started = time.perf_counter()
    results = execute_samples(tasks, samples, local, progress=False)
    local_s = time.perf_counter() - started
    assert all(r.passed for r in results)

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=args.cpus)
    cluster.wait_for_nodes()
    try:
        on_ray = ExecutionConfig(
            sandbox=args.sandbox,
            cluster="ray",
            ray_address=cluster.address,
        )
        import ray

        ray.init(address=cluster.address, log_to_driver=False)
        started = time.perf_counter()
        make_executor(on_ray).close()  # the actors' start, on every node
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        results = execute_samples(tasks, samples, on_ray, progress=False)
        ray_s = time.perf_counter() - started  # the actors' start included
        ray.shutdown()
    finally:
        cluster.shutdown()  # type: ignore[no-untyped-call]
    assert all(r.passed for r in results)
    nodes = Counter(r.node for r in results)

    n = len(samples)
    print(
        f"HumanEval canonical x {args.copies} = {n} samples, sandbox {args.sandbox}; "
        f"{workers} workers in all"
    )
    print(f"{'executor':34} {'seconds':>8} {'samples/s':>10} {'vs local':>9}")
    print(f"{'one local pool':34} {local_s:8.2f} {n / local_s:10.1f} {1:8.2f}x")
    print(f"{'ray, 2 nodes x ' + str(args.cpus) + ' cpu':34} {ray_s:8.2f} {n / ray_s:10.1f} "
          f"{local_s / ray_s:8.2f}x")  # fmt: skip
    # Jobs run ``workers`` at a time: the added wall time per job, times the parallelism.
    per_job = (ray_s - start_s - local_s) / n * workers * 1000
    print(f"actors' start (once per execute): {start_s:.2f} s; overhead of Ray per job, "
          f"the start aside: {per_job:.1f} ms; jobs per node: {dict(nodes)}")  # fmt: skip


if __name__ == "__main__":
    main()
