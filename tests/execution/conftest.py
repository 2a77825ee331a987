"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from codealign.execution import ExecResult, ExecutionConfig, Job
from codealign.execution.executor import Executor
from codealign.tasks import Task

ConfigFor = Callable[..., ExecutionConfig]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.sandbox),
    ],
)
def sandbox_config(request: pytest.FixtureRequest) -> ConfigFor:
    """Each real sandbox in turn: ``sandbox_config(workers=1, ...)`` is its config."""
    if request.param == "docker":
        image = request.getfixturevalue("docker_image")

        def docker(**settings: Any) -> ExecutionConfig:
            return ExecutionConfig(sandbox="docker", image=image, **settings)

        return docker
    from tests.conftest import _require_bwrap

    _require_bwrap()

    def bwrap(**settings: Any) -> ExecutionConfig:
        return ExecutionConfig(sandbox="bwrap", **settings)

    return bwrap


def run_jobs(executor: Executor, *jobs: tuple[Task, str]) -> list[ExecResult]:
    """Each (task, program) run once; the results in the order of the jobs."""
    results = executor.run(Job(i, task, program) for i, (task, program) in enumerate(jobs))
    return sorted(results, key=lambda r: r.sample_index)


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """The port of a listener on the host's loopback; a sandboxed job that reaches it
    fails the module's tests when they end."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    hits: list[object] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                hits.append(server.accept())

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()
    assert not hits, "a sandboxed job reached a listener on the host"
