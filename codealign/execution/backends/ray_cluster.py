"""Execution fanned out over a Ray cluster (``execution.cluster: ray``).

Every node that offers CPUs gets one long-lived actor, pinned to it, that owns that node's
own sandbox pool (Docker or bubblewrap, whichever the node has: ``execution.sandbox``
decides there as it does here), sized to the node's CPUs, with the same limits and the
same judging as on one machine. Jobs carry their task (tests and files included) and
program, so nothing needs a shared filesystem; codealign itself, runner included, travels
to the nodes as a Ray ``py_modules`` package when joining a cluster.

Jobs go one by one to the least loaded actor (each keeps twice its workers in flight) and
results come back as they finish, each naming its node. When a node dies, the calls in
flight on it fail; those jobs go back in the queue and run on the other nodes, so every
job gets exactly one result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import queue
import socket
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult
from codealign.settings.execution import ExecutionConfig

MISSING = "execution.cluster=ray needs Ray, which is not installed: pip install 'codealign[ray]'"


class NodeSandbox:
    """The actor on one node: its sandbox pool, reached one job per call (the actor runs
    as many calls at once as the pool has workers)."""

    def __init__(self, config: ExecutionConfig, node: str, workers: int) -> None:
        from codealign.execution.backends.choice import local_executor

        local = dataclasses.replace(config, cluster="local", ray_address="", workers=workers)
        self.pool = local_executor(local)
        self.node = node

    def run(self, job: Job) -> ExecResult:
        return dataclasses.replace(self.pool.run_one(job), node=self.node)

    def close(self) -> None:
        self.pool.close()


@dataclasses.dataclass
class _Node:
    name: str
    actor: Any
    workers: int
    in_flight: int = 0


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """An address with a port must answer within seconds (ray.init itself would wait on
    an unreachable one for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def _connect(ray: Any, address: str) -> bool:
    """Connect this driver; True if this call did (so ``close`` disconnects it)."""
    if ray.is_initialized():
        return False
    _check_reachable(address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address:
        import codealign

        # The nodes import codealign (runner included) from this copy, not from their disks.
        package = str(Path(codealign.__file__).parent)
        kwargs["runtime_env"] = {"py_modules": [package], "excludes": ["__pycache__"]}
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a new local one"
        raise InputError(f"cannot reach the Ray cluster at {where}: {exc}") from None
    return True


class RayExecutor:
    """Runs jobs on every node of the cluster; the same ``Executor`` as a local pool."""

    name = "ray"

    def __init__(self, config: ExecutionConfig) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        self._connected = _connect(ray, config.ray_address)
        remote = ray.remote(NodeSandbox)
        self.nodes: dict[str, _Node] = {}
        for info in ray.nodes():  # type: ignore[no-untyped-call]
            cpus = int(info.get("Resources", {}).get("CPU", 0))
            if not info.get("Alive") or cpus < 1:
                continue
            node_id = info["NodeID"]
            name = f"{info.get('NodeManagerAddress', '?')}/{node_id[:8]}"
            actor = remote.options(
                num_cpus=0,  # the pool's workers are processes of its own, sized to the node
                max_concurrency=cpus,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(config, name, cpus)
            self.nodes[name] = _Node(name, actor, cpus)
        if not self.nodes:
            raise InputError("the Ray cluster has no live node with a CPU to run samples on")

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]:
        """One result per job, as they finish; ``jobs`` may still be arriving."""
        from ray.exceptions import RayActorError

        arrived: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                for job in jobs:
                    arrived.put(job)
            except BaseException as exc:  # re-raised on the caller's thread
                failure.append(exc)
            finally:
                arrived.put(None)

        threading.Thread(target=feed, name="codealign-ray-feed", daemon=True).start()
        waiting: deque[Job] = deque()
        in_flight: dict[Any, tuple[_Node, Job]] = {}
        fed = False
        try:
            while not fed or waiting or in_flight:
                fed = self._take_arrivals(arrived, waiting, fed, block=not in_flight)
                if failure:
                    raise failure[0]
                self._dispatch(waiting, in_flight)
                if not in_flight:
                    continue
                ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=0.05)
                for ref in ready:
                    node, job = in_flight.pop(ref)
                    node.in_flight -= 1
                    try:
                        result: ExecResult = self.ray.get(ref)
                    except RayActorError:
                        self._lose(node, job, waiting)
                        continue
                    yield result
        finally:
            for ref in in_flight:
                self.ray.cancel(ref)

    @staticmethod
    def _take_arrivals(
        arrived: queue.SimpleQueue[Job | None], waiting: deque[Job], fed: bool, block: bool
    ) -> bool:
        """Move the jobs that have arrived into ``waiting``; True once the stream ended."""
        while not fed:
            try:
                job = arrived.get(block=block and not waiting, timeout=0.05)
            except queue.Empty:
                break
            if job is None:
                return True
            waiting.append(job)
            block = False
        return fed

    def _dispatch(self, waiting: deque[Job], in_flight: dict[Any, tuple[_Node, Job]]) -> None:
        while waiting:
            node = min(self.nodes.values(), key=lambda n: n.in_flight / n.workers)
            if node.in_flight >= 2 * node.workers:
                return
            job = waiting.popleft()
            in_flight[node.actor.run.remote(job)] = (node, job)
            node.in_flight += 1

    def _lose(self, node: _Node, job: Job, waiting: deque[Job]) -> None:
        """``node`` is gone: its job (and, as their calls fail, its others) run elsewhere."""
        waiting.appendleft(job)
        self.nodes.pop(node.name, None)
        if not self.nodes:
            raise RuntimeError("every node of the Ray cluster is gone; nothing left to run on")

    def close(self) -> None:
        for node in self.nodes.values():
            with contextlib.suppress(Exception):  # a node may be gone by now
                self.ray.get(node.actor.close.remote(), timeout=30)
                self.ray.kill(node.actor)
        self.nodes.clear()
        if self._connected:
            self.ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ray_executor(config: ExecutionConfig) -> RayExecutor:
    if importlib.util.find_spec("ray") is None:
        raise InputError(MISSING)
    return RayExecutor(config)
