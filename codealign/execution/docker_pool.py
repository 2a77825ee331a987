"""The Docker backend: a pool of long-lived, locked-down containers running the worker loop.

Each container starts with no network, a read-only root, a small tmpfs /tmp, all
capabilities dropped, no-new-privileges, a non-root user and memory, CPU and pids limits.
Inside, the same runner as every other backend forks one child per job. ``docker run``
costs a few hundred milliseconds, so containers are started once and reused; one that
dies or stops answering is removed and replaced, and its job is answered with a
sandbox_error.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Sequence

from codealign.errors import InputError
from codealign.execution.local import limits_for, runner_source
from codealign.execution.pool_executor import PoolExecutor
from codealign.execution.worker_pool import Launch, WorkerPool
from codealign.settings.execution import DEFAULT_IMAGE, ExecutionConfig

#: The image's unprivileged user (the same uid in the Dockerfile and the offline build).
SANDBOX_UID = 10001
CONTAINER_PREFIX = "codealign-sandbox-"
#: Where a worker finds the socket to the host, and its name.
CHANNEL_MOUNT = "/run/codealign"
CHANNEL_SOCKET = "host.sock"


def docker_cli() -> str | None:
    return shutil.which("docker")


def daemon_problem(timeout: float = 10.0) -> str | None:
    """None when a Docker daemon answers; else what is wrong, in words."""
    cli = docker_cli()
    if cli is None:
        return "the docker command is not installed"
    try:
        result = subprocess.run(
            [cli, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"the Docker daemon did not answer within {timeout:.0f}s"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return "the Docker daemon is not reachable" + (f": {detail[-1]}" if detail else "")
    return None


def image_present(image: str = DEFAULT_IMAGE) -> bool:
    cli = docker_cli()
    if cli is None:
        return False
    result = subprocess.run([cli, "image", "inspect", image], capture_output=True, timeout=30)
    return result.returncode == 0


def docker_argv(
    config: ExecutionConfig, image: str, name: str, channel: str | None = None
) -> list[str]:
    """``docker run`` for one worker container; ``channel``: a host folder holding the
    unix socket the worker connects to (mounted read-only at /run/codealign)."""
    cli = docker_cli() or "docker"
    settings: dict[str, object] = {
        "workdir": "/tmp/jobs",
        "scratch": ["/tmp", "/dev/shm"],
        "isolated": True,
    }
    mount: list[str] = []
    if channel is not None:
        settings["channel"] = f"{CHANNEL_MOUNT}/{CHANNEL_SOCKET}"
        mount = ["--mount", f"type=bind,source={channel},target={CHANNEL_MOUNT},readonly"]
    # The container's memory covers the worker and one job; the job has its own rlimit.
    memory = f"{config.memory_mb + 256}m"
    return [
        cli, "run", "-i", "--rm", "--name", name,
        "--label", "org.codealign.sandbox=1",
        "--network", "none",
        "--ipc", "private",
        *mount,
        "--read-only",
        "--tmpfs", f"/tmp:rw,noexec,nosuid,nodev,size={config.tmpfs_mb}m,mode=1777",
        "--shm-size", "64m",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges",
        "--user", f"{SANDBOX_UID}:{SANDBOX_UID}",
        "--memory", memory, "--memory-swap", memory,
        "--cpus", "1",
        "--pids-limit", str(config.max_processes + 8),
        "--ulimit", "core=0",
        "--ulimit", "nofile=1024:1024",
        "--hostname", "sandbox",
        "--workdir", "/tmp",
        "--log-driver", "none",
        "--env", "LANG=C.UTF-8", "--env", "HOME=/tmp", "--env", "PYTHONDONTWRITEBYTECODE=1",
        image,
        "python3", "-I", "-c", runner_source(), "worker", json.dumps(settings),
    ]  # fmt: skip


def _remove_container(argv: Sequence[str]) -> None:
    """Force-remove a retired worker's container (killing the client does not stop it)."""
    name = argv[argv.index("--name") + 1]
    subprocess.Popen(
        [argv[0], "rm", "-f", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _channel() -> tuple[str, socket.socket]:
    """A folder with a listening unix socket the container's worker (another uid) can
    reach; the pool accepts one connection, then closes and removes it."""
    folder = tempfile.mkdtemp(prefix="codealign-channel-")
    os.chmod(folder, 0o711)
    path = os.path.join(folder, CHANNEL_SOCKET)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(1)
    return folder, listener


def docker_executor(config: ExecutionConfig, image: str = DEFAULT_IMAGE) -> PoolExecutor:
    problem = daemon_problem()
    if problem is not None:
        raise InputError(
            f"the docker sandbox is not available: {problem} (start dockerd, or "
            "use --sandbox bwrap)"
        )
    if not image_present(image):
        raise InputError(f"the sandbox image {image} is missing: run 'codealign sandbox build'")

    def launch() -> Launch:
        folder, listener = _channel()
        name = CONTAINER_PREFIX + uuid.uuid4().hex[:12]
        return Launch(
            docker_argv(config, image, name, folder),
            listener,
            lambda: shutil.rmtree(folder, ignore_errors=True),
        )

    pool = WorkerPool(launch, {}, config.workers, on_retire=_remove_container)
    # --pids-limit caps each container; RLIMIT_NPROC would count the one sandbox uid
    # across all containers, so a fork bomb in one would starve its neighbours.
    return PoolExecutor(config, pool, "docker", limits_for(config, nproc_enforced=False))
