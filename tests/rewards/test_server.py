"""The reward server over loopback: OpenRLHF's request shape, per-test verdicts,
concurrent clients with bad requests mixed in (each refused with its reason, nothing
lost, the server still serving), and the real ``codealign serve`` command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from codealign.rewards.server import ServerLimits, create_app
from codealign.rewards.verifier import Verifier
from codealign.settings.execution import ExecutionConfig
from codealign.tasks.tiny import tiny_tasks

pytestmark = pytest.mark.sandbox
TASKS = tiny_tasks("heldout")[:6]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return dict(requests.get(f"{url}/health", timeout=2).json())
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import uvicorn

    verifier = Verifier(TASKS, execution=ExecutionConfig(sandbox="bwrap", workers=2),
                        heldback_min_tests=3)  # fmt: skip
    app = create_app(verifier, limits=ServerLimits(max_items=64, max_body_bytes=200_000))
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    yield url
    running.should_exit = True
    thread.join(timeout=10)
    verifier.close()


def reward_request(pairs: list[tuple[int, str]]) -> dict[str, Any]:
    """OpenRLHF's body: the query is prompt + response; the label names the task."""
    return {
        "query": [TASKS[i].prompt + body for i, body in pairs],
        "prompts": [TASKS[i].prompt for i, _ in pairs],
        "labels": [TASKS[i].task_id for i, _ in pairs],
    }


def test_get_reward_answers_in_openrlhfs_shape(server: str) -> None:
    right = TASKS[0].canonical_solution or ""
    body = reward_request([(0, right), (0, "    return None\n"), (1, right)])
    answer = requests.post(f"{server}/get_reward", json=body, timeout=60).json()
    assert answer["rewards"][:2] == [1.0, 0.0]
    assert answer["scores"] == answer["rewards"]
    assert len(answer["extra_logs"]["heldback_pass_rate"]) == 3


def test_verify_gives_per_test_verdicts(server: str) -> None:
    task = TASKS[2]
    items = [
        {"task_id": task.task_id, "completion": task.canonical_solution},
        {"task_id": task.task_id, "solution": "def nothing():\n    pass\n"},
    ]
    results = requests.post(f"{server}/verify", json={"items": items}, timeout=60).json()["results"]
    assert [r["passed"] for r in results] == [True, False]
    assert results[0]["tests"] and all(t["status"] == "passed" for t in results[0]["tests"])
    assert results[1]["status"] in ("failed", "error")


BAD: list[tuple[str, Any, int, str]] = [
    ("/get_reward", b"{not json", 422, "malformed request"),
    ("/get_reward", {"query": ["x"], "labels": []}, 422, "same length"),
    ("/get_reward", {"query": ["x"], "prompts": ["y"], "labels": [TASKS[0].task_id]}, 422,
     "does not start with its prompt"),
    ("/get_reward", {"query": ["x"], "labels": ["tiny/nope"]}, 404, "is not a task"),
    ("/verify", {"items": [{"task_id": "tiny/nope", "completion": ""}]}, 404, "is not a task"),
    ("/verify", {"items": [{"task_id": TASKS[0].task_id}]}, 422, "exactly one of"),
    ("/verify", {"items": [{"task_id": TASKS[0].task_id, "completion": ""}] * 65}, 413,
     "the limit is 64"),
    ("/verify", {"items": [{"task_id": TASKS[0].task_id, "completion": "x" * 250_000}]}, 413,
     "limit"),
]  # fmt: skip


def test_concurrent_clients_with_bad_requests_mixed_in(server: str) -> None:
    """40 good requests (each 4 answers with a known verdict) and every bad kind, 8 at a
    time: every good one answered right, every bad one refused with its reason."""

    def good(k: int) -> list[float]:
        pairs = [(k % 6, TASKS[k % 6].canonical_solution or ""), ((k + 1) % 6, "    pass\n")] * 2
        response = requests.post(f"{server}/get_reward", json=reward_request(pairs), timeout=120)
        response.raise_for_status()
        return list(response.json()["rewards"])

    def bad(case: tuple[str, Any, int, str]) -> tuple[int, str]:
        path, body, _, _ = case
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(f"{server}{path}", data=data, timeout=60,
                                 headers={"content-type": "application/json"})  # fmt: skip
        return response.status_code, response.json()["detail"]

    with ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(good, k) for k in range(40)]
        bads = [pool.submit(bad, case) for case in BAD * 2]
        for future in goods:
            assert future.result() == [1.0, 0.0, 1.0, 0.0]
        for case, future in zip(BAD * 2, bads, strict=True):
            status, detail = future.result()
            assert status == case[2] and case[3] in detail, (case[:1], status, detail)
    assert requests.get(f"{server}/health", timeout=5).json()["status"] == "ok"


def test_the_serve_command_on_loopback() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "codealign.cli", "serve", "--tasks", "tiny-heldout", "--port",
         str(port), "--sandbox", "bwrap", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_healthy(url)["tasks"] == 96
        task = tiny_tasks("heldout")[5]
        body = {"query": [task.prompt + (task.canonical_solution or "")], "prompts": [task.prompt],
                "labels": [task.task_id]}  # fmt: skip
        assert requests.post(f"{url}/get_reward", json=body, timeout=60).json()["rewards"] == [1.0]
    finally:
        os.kill(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert "serving 96 tasks" in out
