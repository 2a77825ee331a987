"""The Docker backend: a pool of long-lived, locked-down containers running the worker loop.

Each container starts with no network, a read-only root, a small tmpfs /tmp, all
capabilities dropped, no-new-privileges, a non-root user and memory, CPU and pids limits.
Inside, the same runner as every other backend forks one child per job. ``docker run``
costs a few hundred milliseconds, so containers are started once and reused; one that
dies or stops answering is removed and replaced, and its job is answered with a
sandbox_error.

Why the ``docker`` command and not the Python SDK (docker-py), and why codealign does not
depend on the ``docker`` package: the command is the client Docker users configure. It
honours DOCKER_HOST, DOCKER_CONTEXT and ``docker context use``, the TLS settings, ssh://
hosts and the client's config file; docker-py's ``from_env`` reads DOCKER_HOST and the TLS
variables but not contexts, and builds without BuildKit. A worker's stdio through the SDK
is a hijacked HTTP stream whose frames the pool would have to demultiplex itself, where
``docker run -i`` gives it plain pipes, at the cost of one client process per worker
(not per job). Every docker command runs with the client's settings (``client_env``).

Where the daemon runs decides the worker's channel. A daemon on this host (a unix socket)
gets a bind-mounted folder holding a unix socket of the pool's, so messages skip the
attach stream; a daemon elsewhere (tcp://, ssh://, or a socket forwarded from another
machine or container, found when the bind mount fails) cannot see that folder, and its
workers speak over ``docker run -i``'s stdin and stdout. The container, its flags and
limits are the same either way.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence

from codealign.errors import InputError
from codealign.execution.backends.pool_executor import PoolExecutor
from codealign.execution.backends.worker_pool import (
    Launch,
    SandboxStartError,
    WorkerPool,
    start_together,
)
from codealign.execution.backends.worker_program import limits_for, runner_source
from codealign.settings.execution import DEFAULT_IMAGE, ExecutionConfig

#: The image's unprivileged user (the same uid in the Dockerfile and the offline build).
SANDBOX_UID = 10001
CONTAINER_PREFIX = "codealign-sandbox-"
#: Where a worker finds the socket to the host, and its name.
CHANNEL_MOUNT = "/run/codealign"
CHANNEL_SOCKET = "host.sock"
#: What of the host's environment a docker client gets besides DOCKER_*: where its config
#: lives and what an ssh:// or proxied daemon needs. None of it reaches a container (only
#: the explicit --env values do); the rest of the environment is not handed over at all.
_CLIENT_ENV = frozenset(
    {"HOME", "PATH", "SSH_AUTH_SOCK", "XDG_RUNTIME_DIR"}
    | {f"{name}_PROXY" for name in ("HTTP", "HTTPS", "NO", "ALL")}
    | {f"{name}_proxy" for name in ("http", "https", "no", "all")}
)
#: The daemon's answer to a bind mount of a folder it cannot see.
_UNSEEN_FOLDER = "bind source path does not exist"


def docker_cli() -> str | None:
    return shutil.which("docker")


def client_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a docker client: its settings (DOCKER_HOST, DOCKER_CONTEXT,
    DOCKER_CONFIG, DOCKER_TLS_VERIFY, ...) and ``_CLIENT_ENV``, from ``os.environ``."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith("DOCKER_") or k in _CLIENT_ENV}


def daemon_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The daemon address the docker command uses (DOCKER_HOST, else the current context),
    or None when it cannot say (no command, an old one)."""
    cli = docker_cli()
    if cli is None:
        return None
    argv = [cli, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, env=env)
    except subprocess.TimeoutExpired:
        return None
    host = result.stdout.strip()
    return host if result.returncode == 0 and host else None


def may_share_files(endpoint: str | None) -> bool:
    """Whether the daemon may see this host's files (so a bind-mounted channel can work):
    a unix socket, or an endpoint unknown; a failed bind mount is caught later."""
    return endpoint is None or endpoint.startswith("unix://")


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
    config: ExecutionConfig,
    image: str,
    name: str,
    channel: str | None = None,
    mode: str = "worker",
) -> list[str]:
    """``docker run`` for one worker container; ``channel``: a host folder holding the
    unix socket the worker connects to (mounted read-only at /run/codealign); ``mode``:
    the candidate's worker ("worker") or the judge's ("judge"), in containers alike."""
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
        "python3", "-I", "-c", runner_source(), mode, json.dumps(settings),
    ]  # fmt: skip


def _remove_container(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """Force-remove a retired worker's container (killing the client does not stop it)."""
    name = argv[argv.index("--name") + 1]
    subprocess.Popen(
        [argv[0], "rm", "-f", name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
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


def _worker_pool(
    config: ExecutionConfig, image: str, env: dict[str, str], channel: bool, mode: str = "worker"
) -> WorkerPool:
    """Workers whose docker clients get ``env``, talking over a bind-mounted socket
    (``channel``) or over the container's stdin and stdout."""

    def launch() -> Launch:
        name = CONTAINER_PREFIX + uuid.uuid4().hex[:12]
        if not channel:
            return Launch(docker_argv(config, image, name, mode=mode), socket_stdio=False)
        folder, listener = _channel()
        return Launch(
            docker_argv(config, image, name, folder, mode),
            listener,
            lambda: shutil.rmtree(folder, ignore_errors=True),
            socket_stdio=False,  # the docker client keeps pipes: its stdio is not the worker's
        )

    return WorkerPool(
        launch,
        env,
        config.workers,
        on_retire=lambda argv: _remove_container(argv, env),
        wait=False,
    )


def _pools(
    config: ExecutionConfig, image: str, env: dict[str, str], channel: bool
) -> tuple[WorkerPool, WorkerPool]:
    """The candidates' workers and the judges' (containers of their own, locked down the
    same way), each pool's first container started side by side."""
    pool = _worker_pool(config, image, env, channel)
    try:
        judges = _worker_pool(config, image, env, channel, "judge")
    except BaseException:
        pool.close()
        raise
    start_together(pool, judges)
    return pool, judges


def docker_executor(config: ExecutionConfig, image: str = DEFAULT_IMAGE) -> PoolExecutor:
    problem = daemon_problem()
    if problem is not None:
        raise InputError(
            f"the docker sandbox is not available: {problem} (start dockerd, or "
            "use --sandbox bwrap)"
        )
    if not image_present(image):
        raise InputError(f"the sandbox image {image} is missing: run 'codealign sandbox build'")
    env = client_env()
    channel = may_share_files(daemon_endpoint(env))
    try:
        pool, judges = _pools(config, image, env, channel)
    except SandboxStartError as exc:
        if not (channel and _UNSEEN_FOLDER in str(exc)):
            raise
        # A unix socket, but the daemon is elsewhere (forwarded into this container, say).
        channel = False
        pool, judges = _pools(config, image, env, channel)
    # --pids-limit caps each container; RLIMIT_NPROC would count the one sandbox uid
    # across all containers, so a fork bomb in one would starve its neighbours.
    limits = limits_for(config, nproc_enforced=False)
    return PoolExecutor(config, pool, "docker", limits, judges)
