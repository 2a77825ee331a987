"""The Docker pool talks to whichever daemon the docker client is set up for: DOCKER_HOST at
another unix socket, a daemon that is not on this host (over docker run's stdio), and a
forwarded socket whose daemon cannot see the channel folder, with the same isolation."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any

import pytest

from codealign.execution import ExecutionConfig, Job, make_executor
from codealign.execution.backends import docker_pool
from codealign.execution.backends.worker_pool import SandboxStartError
from codealign.tasks import AssertsSuite, Task

TASK = Task("dbl", "Double x.", "dbl", AssertsSuite(("assert dbl(2) == 4",)), prompt_style="text")
PROGRAMS = {
    "def dbl(x):\n    return 2 * x\n": "passed",
    "def dbl(x):\n    return x + 3\n": "failed",
}
_REQUEST = re.compile(rb"^(?:GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r\n")


def test_client_env_keeps_the_clients_settings_only() -> None:
    environ = {
        "DOCKER_HOST": "ssh://me@box",
        "DOCKER_CONTEXT": "remote",
        "DOCKER_TLS_VERIFY": "1",
        "HOME": "/home/me",
        "PATH": "/usr/bin",
        "SSH_AUTH_SOCK": "/run/agent",
        "https_proxy": "http://proxy:3128",
        "API_TOKEN": "secret",
        "LD_PRELOAD": "/tmp/x.so",
    }
    assert docker_pool.client_env(environ) == {
        k: v for k, v in environ.items() if k not in ("API_TOKEN", "LD_PRELOAD")
    }


@pytest.mark.parametrize(
    ("endpoint", "shares"),
    [
        ("unix:///var/run/docker.sock", True),
        ("unix:///run/user/1000/docker.sock", True),
        (None, True),  # unknown: try, and fall back when the bind mount fails
        ("tcp://10.0.0.5:2376", False),
        ("ssh://me@build-box", False),
    ],
)
def test_only_a_unix_socket_daemon_gets_the_channel(endpoint: str | None, shares: bool) -> None:
    assert docker_pool.may_share_files(endpoint) is shares


@pytest.mark.skipif(docker_pool.docker_cli() is None, reason="the docker command is missing")
def test_daemon_endpoint_follows_docker_host() -> None:
    env = {"DOCKER_HOST": "tcp://10.0.0.5:2376", "PATH": os.environ.get("PATH", "")}
    assert docker_pool.daemon_endpoint(env) == "tcp://10.0.0.5:2376"


class _FakePool:
    def __init__(self, channel: bool, error: str = "") -> None:
        self.channel = channel
        self.error = error
        self.closed = False

    def started(self) -> None:
        if self.error:
            raise SandboxStartError(f"sandbox worker failed to start: {self.error}")

    def close(self) -> None:
        self.closed = True


def _channels_tried(monkeypatch: pytest.MonkeyPatch, endpoint: str, error: str) -> list[bool]:
    """The ``channel`` of each pool docker_executor starts, the first failing with ``error``;
    each try starts the judges' pool beside it on the same channel, and closes both when
    the candidates' pool cannot start."""
    tried: list[_FakePool] = []
    judges: list[_FakePool] = []

    def worker_pool(
        config: Any, image: str, env: Any, channel: bool, mode: str = "worker"
    ) -> _FakePool:
        if mode == "judge":
            judges.append(_FakePool(channel))
            return judges[-1]
        tried.append(_FakePool(channel, error if error and not tried else ""))
        return tried[-1]

    monkeypatch.setattr(docker_pool, "daemon_problem", lambda **_: None)
    monkeypatch.setattr(docker_pool, "image_present", lambda image: True)
    monkeypatch.setattr(docker_pool, "daemon_endpoint", lambda env: endpoint)
    monkeypatch.setattr(docker_pool, "_worker_pool", worker_pool)
    try:
        docker_pool.docker_executor(ExecutionConfig(sandbox="docker"))
    finally:
        assert [j.channel for j in judges] == [t.channel for t in tried]
        assert [j.closed for j in judges] == [t.closed for t in tried]
        assert all(t.closed for t in tried if t.error)
    return [t.channel for t in tried]


def test_the_channel_is_tried_only_where_it_can_work(monkeypatch: pytest.MonkeyPatch) -> None:
    unseen = 'docker: Error response from daemon: invalid mount config for type "bind": ' + (
        "bind source path does not exist: /tmp/codealign-channel-x"
    )
    assert _channels_tried(monkeypatch, "unix:///var/run/docker.sock", "") == [True]
    assert _channels_tried(monkeypatch, "tcp://10.0.0.5:2376", "") == [False]
    assert _channels_tried(monkeypatch, "unix:///var/run/docker.sock", unseen) == [True, False]
    with pytest.raises(SandboxStartError, match="no space left"):
        _channels_tried(monkeypatch, "unix:///var/run/docker.sock", "no space left on device")


# --- against a real daemon, through relays that stand in for other endpoints ---


class _Relay:
    """Forwards every connection made to ``listener`` to the daemon's unix socket, and
    notes the path of each HTTP request that passes."""

    def __init__(self, listener: socket.socket, daemon_socket: str) -> None:
        self.paths: list[str] = []
        self._listener = listener
        self._daemon = daemon_socket
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            daemon.connect(self._daemon)
            for src, dst, note in ((client, daemon, True), (daemon, client, False)):
                threading.Thread(target=self._pipe, args=(src, dst, note), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, note: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := src.recv(1 << 16):
                if note and (match := _REQUEST.match(chunk)):
                    self.paths.append(match.group(1).decode())
                dst.sendall(chunk)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def containers(self) -> list[str]:
        """The names of the containers created through the relay."""
        return re.findall(r"/containers/create\?name=([\w-]+)", " ".join(self.paths))

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def daemon_socket(docker_image: str) -> str:
    endpoint = docker_pool.daemon_endpoint() or ""
    if not endpoint.startswith("unix://"):
        pytest.skip(f"the relays forward to a unix socket; the daemon is at {endpoint!r}")
    return endpoint.removeprefix("unix://")


def _docker(daemon: str, *argv: str) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
    cli = docker_pool.docker_cli() or "docker"
    return subprocess.run(
        [cli, "--host", f"unix://{daemon}", *argv], capture_output=True, text=True, env=env
    ).stdout


def _leftovers(daemon: str, names: list[str]) -> list[str]:
    """Those of the containers ``names`` that still exist."""
    filters = [f"--filter=name=^{name}$" for name in names]
    return _docker(daemon, "ps", "-aq", *filters).split() if names else []


def _inspect(daemon: str, name: str) -> dict[str, Any]:
    (found,) = json.loads(_docker(daemon, "container", "inspect", name))
    return dict(found)


def _assert_locked_down(info: dict[str, Any], config: ExecutionConfig) -> None:
    host = info["HostConfig"]
    memory = (config.memory_mb + 256) << 20
    assert host["NetworkMode"] == "none" and host["IpcMode"] == "private"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False
    assert (host["Memory"], host["MemorySwap"]) == (memory, memory)
    assert host["PidsLimit"] == config.max_processes + 8
    assert host["NanoCpus"] == 10**9
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]} == {
        "core": (0, 0),
        "nofile": (1024, 1024),
    }
    assert host["LogConfig"]["Type"] == "none"
    assert "noexec" in host["Tmpfs"]["/tmp"] and f"size={config.tmpfs_mb}m" in host["Tmpfs"]["/tmp"]
    assert host["AutoRemove"] is True
    assert info["Config"]["User"] == f"{docker_pool.SANDBOX_UID}:{docker_pool.SANDBOX_UID}"


def _run_through(relay: _Relay, daemon: str, image: str) -> list[dict[str, Any]]:
    """Run the jobs with the pool, while the relay is DOCKER_HOST; the containers' inspect
    records, taken while they ran. Waits until the pool's containers are gone."""
    config = ExecutionConfig(sandbox="docker", image=image, workers=2, timeout_s=5.0)
    jobs = [Job(i, TASK, program) for i, program in enumerate(PROGRAMS)]
    try:
        with make_executor(config) as executor:
            results = sorted(executor.run(jobs), key=lambda r: r.sample_index)
            assert [r.status for r in results] == list(PROGRAMS.values())
            names = relay.containers()
            assert names, "the pool's docker run did not go through DOCKER_HOST"
            infos = [_inspect(daemon, name) for name in names]
        for info in infos:
            _assert_locked_down(info, config)
        return infos
    finally:  # the containers are removed through the relay: keep it until they are gone
        left = _leftovers(daemon, relay.containers())
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = _leftovers(daemon, relay.containers())
        relay.close()
        assert not left, f"containers left behind: {left}"


@pytest.mark.docker
def test_docker_host_at_another_unix_socket(
    daemon_socket: str, docker_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tempfile.TemporaryDirectory(prefix="codealign-test-docker-") as folder:
        path = os.path.join(folder, "other.sock")  # short: a unix socket path is capped
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        infos = _run_through(_Relay(listener, daemon_socket), daemon_socket, docker_image)
    for info in infos:  # a daemon on this host: the channel, mounted read-only
        (mount,) = info["Mounts"]
        assert (mount["Type"], mount["Destination"], mount["RW"]) == (
            "bind",
            "/run/codealign",
            False,
        )


@pytest.mark.docker
def test_a_daemon_elsewhere_talks_over_stdio(
    daemon_socket: str, docker_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{port}")

    def no_channel() -> tuple[str, socket.socket]:
        raise AssertionError("a daemon that is not on this host cannot see the channel")

    monkeypatch.setattr(docker_pool, "_channel", no_channel)
    infos = _run_through(_Relay(listener, daemon_socket), daemon_socket, docker_image)
    assert all(info["Mounts"] == [] for info in infos)


@pytest.mark.docker
def test_a_daemon_that_cannot_see_the_channel_falls_back_to_stdio(
    docker_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A socket forwarded into this container, say: the bind mount fails, stdio works."""
    real_channel = docker_pool._channel

    def unseen_channel() -> tuple[str, socket.socket]:
        folder, listener = real_channel()
        shutil.rmtree(folder)  # as the daemon sees it
        return folder, listener

    monkeypatch.setattr(docker_pool, "_channel", unseen_channel)
    config = ExecutionConfig(sandbox="docker", image=docker_image, workers=1, timeout_s=5.0)
    jobs = [Job(i, TASK, program) for i, program in enumerate(PROGRAMS)]
    with make_executor(config) as executor:
        results = sorted(executor.run(jobs), key=lambda r: r.sample_index)
    assert [r.status for r in results] == list(PROGRAMS.values())
