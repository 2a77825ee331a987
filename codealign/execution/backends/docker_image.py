"""Building and checking the sandbox image, with or without a registry.

``docker build`` on codealign/sandbox/Dockerfile needs a registry for its base image. GPU clusters
are often air-gapped, so the fallback makes an equivalent image from Debian's packages
alone: debootstrap a minimal Debian with python3 and pytest, add the unprivileged user,
and ``docker import`` the tree. Both go through the ``docker`` command, which sends the build
context or the tree to whichever daemon the client is set up for (see docker_pool for why
the command and not the Python SDK).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from codealign.errors import InputError
from codealign.execution.backends.docker_pool import (
    SANDBOX_UID,
    daemon_endpoint,
    daemon_problem,
    docker_cli,
    image_present,
    may_share_files,
)
from codealign.settings.execution import DEFAULT_IMAGE

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the offline image drops: caches and documentation nobody runs.
_PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
)

Log = Callable[[str], None]


def _run(argv: Sequence[str], log: Log, **kwargs: object) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(argv[:6]) + (" ..." if len(argv) > 6 else ""))
    return subprocess.run(list(argv), text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def build_with_dockerfile(image: str, pip_packages: Sequence[str], log: Log) -> str | None:
    """``docker build`` from codealign/sandbox/Dockerfile; None on success, else why it failed."""
    context = resources.files("codealign.sandbox")
    with resources.as_file(context) as path:
        result = _run(
            [
                docker_cli() or "docker",
                "build",
                "-t",
                image,
                "--build-arg",
                f"PIP_PACKAGES={' '.join(pip_packages)}",
                "-f",
                str(Path(path) / "Dockerfile"),
                str(path),
            ],
            log,
            timeout=1800,
        )
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"docker build exited {result.returncode}"


def build_offline(
    image: str,
    pip_packages: Sequence[str],
    log: Log,
    mirror: str = DEBIAN_MIRROR,
    suite: str = DEBIAN_SUITE,
) -> None:
    """debootstrap a minimal Debian with python3 and pytest, then ``docker import`` it."""
    if shutil.which("debootstrap") is None:
        raise InputError("the offline build needs debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise InputError("the offline build runs debootstrap, which needs root")
    include = ["python3", "python3-pytest"] + (["python3-pip"] if pip_packages else [])
    with tempfile.TemporaryDirectory(prefix="codealign-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        result = _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(include)}",
                suite,
                str(root),
                mirror,
            ],
            log,
            timeout=3600,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise InputError(f"debootstrap failed:\n{tail}")
        if pip_packages:
            result = _run(
                [
                    "chroot",
                    str(root),
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--no-cache-dir",
                    "--break-system-packages",
                    *pip_packages,
                ],
                log,
                timeout=3600,
            )
            if result.returncode != 0:
                raise InputError(f"pip install in the image failed: {result.stderr[-500:]}")
        with open(root / "etc/passwd", "a", encoding="utf-8") as fh:
            fh.write(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}::/tmp:/usr/sbin/nologin\n")
        with open(root / "etc/group", "a", encoding="utf-8") as fh:
            fh.write(f"sandbox:x:{SANDBOX_UID}:\n")
        for rel in _PRUNE:
            shutil.rmtree(root / rel, ignore_errors=True)
            (root / rel).mkdir(parents=True, exist_ok=True)
        log(f"$ tar -C {root} -c . | docker import ... {image}")
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        imported = subprocess.run(
            [docker_cli() or "docker", "import",
             "--change", f"USER {SANDBOX_UID}:{SANDBOX_UID}",
             "--change", "WORKDIR /tmp",
             "--change", "ENV LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 "
                         "PATH=/usr/local/bin:/usr/bin:/bin",
             "--change", "LABEL org.codealign.build=offline",
             "-", image],
            stdin=tar.stdout, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise InputError(f"docker import failed: {imported.stderr.strip()[-500:]}")


def build_image(
    image: str = DEFAULT_IMAGE,
    pip_packages: Sequence[str] = (),
    method: str = "auto",
    log: Log = print,
) -> str:
    """Build the sandbox image; returns the method that worked ("dockerfile" or "offline")."""
    problem = daemon_problem()
    if problem is not None:
        raise InputError(f"cannot build the sandbox image: {problem}")
    if method in ("auto", "dockerfile"):
        why = build_with_dockerfile(image, pip_packages, log)
        if why is None:
            return "dockerfile"
        if method == "dockerfile":
            raise InputError(f"docker build failed: {why}")
        log(f"docker build failed ({why}); building offline from Debian's packages instead")
    build_offline(image, pip_packages, log)
    return "offline"


def check_sandbox(image: str = DEFAULT_IMAGE) -> list[tuple[str, bool, str]]:
    """``(what, ok, detail)`` for the daemon, the image and a trial container."""
    checks: list[tuple[str, bool, str]] = []
    problem = daemon_problem()
    if problem is not None:
        checks.append(("docker daemon", False, problem))
        return checks
    endpoint = daemon_endpoint()
    detail = f"answers at {endpoint}" if endpoint else "answers"
    if not may_share_files(endpoint):
        detail += " (not on this host: workers talk over docker run's stdin and stdout)"
    checks.append(("docker daemon", True, detail))
    present = image_present(image)
    checks.append(
        (
            f"image {image}",
            present,
            "present" if present else "missing: run 'codealign sandbox build'",
        )
    )
    if not present:
        return checks
    probe = (
        "import socket, sys, pytest, os\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=1); net = 'reachable'\n"
        "except OSError:\n    net = 'none'\n"
        "print(sys.version.split()[0], pytest.__version__, os.getuid(), net)"
    )
    result = subprocess.run(
        [
            docker_cli() or "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            image,
            "python3",
            "-c",
            probe,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        checks.append(("trial container", False, result.stderr.strip()[-300:]))
        return checks
    version, pytest_version, uid, net = result.stdout.split()
    ok = uid != "0" and net == "none"
    checks.append(
        (
            "trial container",
            ok,
            f"python {version}, pytest {pytest_version}, uid {uid}, network {net}",
        )
    )
    return checks
