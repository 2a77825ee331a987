"""The reward server over loopback: OpenRLHF's request shape, per-test verdicts,
concurrent clients with bad requests mixed in (each refused with its reason, nothing
lost, the server still serving), and the real ``codealign serve`` command; what it
refuses before anything runs (foreign Hosts, other origins, bodies that are not JSON, a
missing token), a stalled verification's deadline, and TLS with a token."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from fastapi.testclient import TestClient

from codealign.cli import main
from codealign.rewards.server import ServerLimits, create_app
from codealign.rewards.verifier import Answer, Verdict, Verifier
from codealign.settings.execution import ExecutionConfig
from codealign.tasks.tiny import tiny_tasks
from codealign.web_guard import Guard

TASKS = tiny_tasks("heldout")[:6]
TOKEN = "reward-token-0123456789abcdef"


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


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    verifier = Verifier(TASKS, execution=ExecutionConfig(sandbox="bwrap", workers=2),
                        heldback_min_tests=3)  # fmt: skip
    app = create_app(verifier, limits=ServerLimits(max_items=64, max_body_bytes=200_000))
    with running(app) as url:
        yield url
    verifier.close()


def reward_request(pairs: list[tuple[int, str]]) -> dict[str, Any]:
    """OpenRLHF's body: the query is prompt + response; the label names the task."""
    return {
        "query": [TASKS[i].prompt + body for i, body in pairs],
        "prompts": [TASKS[i].prompt for i, _ in pairs],
        "labels": [TASKS[i].task_id for i, _ in pairs],
    }


@pytest.mark.sandbox
def test_get_reward_answers_in_openrlhfs_shape(server: str) -> None:
    right = TASKS[0].canonical_solution or ""
    body = reward_request([(0, right), (0, "    return None\n"), (1, right)])
    answer = requests.post(f"{server}/get_reward", json=body, timeout=60).json()
    assert answer["rewards"][:2] == [1.0, 0.0]
    assert answer["scores"] == answer["rewards"]
    assert len(answer["extra_logs"]["heldback_pass_rate"]) == 3


@pytest.mark.sandbox
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


@pytest.mark.sandbox
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


@pytest.mark.sandbox
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


class Stall:
    """A verify() that blocks until released, counting its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, answers: Sequence[Answer], *, score: bool = False) -> list[Verdict]:
        self.calls += 1
        self.release.wait(60)
        return []


@pytest.fixture()
def stall(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Verifier, Stall]]:
    verifier, stalled = Verifier(TASKS), Stall()
    monkeypatch.setattr(verifier, "verify", stalled)
    yield verifier, stalled
    stalled.release.set()


ITEM = {"task_id": TASKS[0].task_id, "completion": "    pass\n"}
JSON = {"content-type": "application/json"}


def test_a_stalled_verification_gets_a_504_and_never_holds_up_health(
    stall: tuple[Verifier, Stall],
) -> None:
    verifier, stalled = stall
    app = create_app(verifier, limits=ServerLimits(request_timeout_s=1.5))
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(requests.post, f"{url}/verify", json={"items": [ITEM]}, timeout=30)
        while stalled.calls == 0:
            assert time.monotonic() - started < 10, "verify() never called"
            time.sleep(0.01)
        for _ in range(5):  # while it blocks, health and the other clients are answered
            asked = time.monotonic()
            assert requests.get(f"{url}/health", timeout=2).json()["status"] == "ok"
            assert time.monotonic() - asked < 0.5
        unknown = {"items": [{"task_id": "tiny/nope", "completion": ""}]}
        assert requests.post(f"{url}/verify", json=unknown, timeout=5).status_code == 404
        response = waiting.result()
        assert response.status_code == 504, response.text
        assert "over 1.5 s (the deadline)" in response.json()["detail"]
        assert 1.4 < time.monotonic() - started < 10
        assert not stalled.release.is_set()  # verify() is still blocked, the server serves
        assert requests.get(f"{url}/health", timeout=2).json()["request_timeout_s"] == 1.5


def test_the_default_guard_refuses_foreign_hosts_other_sites_and_bodies_not_json(
    stall: tuple[Verifier, Stall],
) -> None:
    verifier, stalled = stall
    stalled.release.set()
    app = create_app(verifier)
    assert TestClient(app).get("/health").status_code == 421  # TestClient's Host: testserver
    local = TestClient(app, base_url="http://127.0.0.1:8000")
    assert local.get("/health").json()["status"] == "ok"
    body = json.dumps({"items": [ITEM]})
    reward = json.dumps({"query": ["x"], "labels": [TASKS[0].task_id]})
    cases = [
        ({"content-type": "text/plain"}, 415),  # a "simple" cross-site request
        ({"content-type": "application/x-www-form-urlencoded"}, 415),  # a form post
        ({}, 415),
        ({**JSON, "origin": "http://evil.example"}, 403),
        ({**JSON, "origin": "http://127.0.0.1:9999"}, 403),  # another app on this machine
        ({**JSON, "origin": "null"}, 403),
        ({**JSON, "sec-fetch-site": "cross-site"}, 403),
        ({**JSON, "sec-fetch-site": "same-site"}, 403),
        ({**JSON, "host": "evil.example:8000"}, 421),  # DNS rebinding
        ({**JSON, "host": "127.0.0.1.nip.io"}, 421),
    ]
    for headers, code in cases:
        for path, content in (("/verify", body), ("/get_reward", reward)):
            response = local.post(path, content=content, headers=headers)
            assert response.status_code == code and response.json()["detail"], (path, headers)
    assert stalled.calls == 0  # nothing refused reached the verifier
    own = {**JSON, "origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    assert local.post("/verify", content=body, headers=own).json() == {"results": []}
    assert stalled.calls == 1
    # A test's own Host is allowed by naming it, never by default.
    guard = Guard(hosts=frozenset({"testserver"}))
    assert TestClient(create_app(verifier, guard=guard)).get("/health").status_code == 200


def test_text_that_is_not_unicode_is_a_422_not_a_500(stall: tuple[Verifier, Stall]) -> None:
    verifier, _ = stall
    client = TestClient(create_app(verifier), base_url="http://127.0.0.1:8000")
    for body in (b'{"items": [{"task_id": "t", "completion": "\\ud800"}]}',  # lone surrogate
                 b'{"items": [{"task_id": "t", "completion": "\xff"}]}'):  # not UTF-8  # fmt: skip
        response = client.post("/verify", content=body, headers=JSON)
        assert response.status_code == 422 and "Invalid JSON" in response.json()["detail"]
    assert client.get("/health").json()["status"] == "ok"


def test_a_token_guards_every_route_but_health(stall: tuple[Verifier, Stall]) -> None:
    verifier, stalled = stall
    stalled.release.set()
    guard = Guard.for_bind("127.0.0.1", token=TOKEN, open_paths=("/health",))
    client = TestClient(create_app(verifier, guard=guard), base_url="http://127.0.0.1:8000")
    assert client.get("/health").status_code == 200
    for given in (None, "Bearer nope", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}"):
        headers = JSON if given is None else {**JSON, "authorization": given}
        response = client.post("/verify", json={"items": [ITEM]}, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert stalled.calls == 0
    ok = client.post(
        "/verify", json={"items": [ITEM]}, headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert ok.status_code == 200 and stalled.calls == 1


def test_serving_off_loopback_without_a_token_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CODEALIGN_TOKEN", raising=False)
    assert main(["serve", "--tasks", "tiny-heldout", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 without a token" in err and "--allow-no-token" in err
    assert main(["serve", "--tasks", "tiny-heldout", "--request-timeout-s", "0"]) == 2


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key: by ``cryptography`` when
    installed, else the openssl command; the test is skipped with neither."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor openssl")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True,
                       capture_output=True)  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )  # fmt: skip
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return cert, key


@pytest.mark.sandbox
def test_the_serve_command_over_tls_with_a_token(tmp_path: Path) -> None:
    """``codealign serve --tls-cert --tls-key --token-file``: HTTPS that verifies
    against the certificate, the token asked for, plain HTTP not answered."""
    cert, key = self_signed(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "codealign.cli", "serve", "--tasks", "tiny-heldout", "--port",
         str(port), "--sandbox", "bwrap", "--workers", "1", "--tls-cert", str(cert),
         "--tls-key", str(key), "--token-file", str(token)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "CODEALIGN_TOKEN"},
    )  # fmt: skip
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"{url}/health", timeout=2, verify=str(cert)).json()
                break
            except requests.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert health["tasks"] == 96  # /health is open: no data of the clients' in it
        task = tiny_tasks("heldout")[5]
        body = {"query": [task.prompt + (task.canonical_solution or "")], "prompts": [task.prompt],
                "labels": [task.task_id]}  # fmt: skip

        def reward(headers: dict[str, str]) -> tuple[int, Any]:
            # Each response closed at once: a TLS connection left open holds up Ctrl-C.
            with requests.post(f"{url}/get_reward", json=body, headers=headers, timeout=60,
                               verify=str(cert)) as response:  # fmt: skip
                return response.status_code, response.json()

        assert reward({})[0] == 401
        code, answer = reward({"authorization": f"Bearer {TOKEN}"})
        assert code == 200 and answer["rewards"] == [1.0]
        with pytest.raises(requests.exceptions.SSLError):  # not the certificate it trusts
            requests.get(f"{url}/health", timeout=5)
        with pytest.raises(requests.ConnectionError):  # plain HTTP gets no answer
            requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        os.kill(process.pid, signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert f"serving 96 tasks on https://127.0.0.1:{port}" in out and "bearer token" in out
