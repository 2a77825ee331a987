"""How every sandbox worker starts, the candidate's and the judge's alike: its settings,
its line to the host, and a folder of its own. Standard library only (bundled into the
sandbox program with the rest of ``codealign.sandbox``)."""

from __future__ import annotations

import os
import socket
import sys
from typing import NamedTuple, TypedDict

from codealign.sandbox.hygiene import Folders, harden_worker
from codealign.sandbox.protocol import LineReader, write_all


class WorkerSettings(TypedDict, total=False):
    workdir: str
    scratch: list[str]
    keep: list[str]
    #: The sandbox has its own PID, IPC and network namespaces: the worker must be PID 1,
    #: and processes, IPC objects and sockets are checked between jobs.
    isolated: bool
    #: A unix socket to reach the host by, instead of stdin/stdout (if it connects).
    channel: str


def _channel(settings: WorkerSettings) -> tuple[int, int]:
    """The host's line: a unix socket where one was mounted for us, else stdin/stdout.
    Either way it moves to private descriptors and 0/1/2 become harmless."""
    path = settings.get("channel")
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
        else:
            fd = sock.detach()
            return fd, os.dup(fd)
    return os.dup(0), os.dup(1)


class Out:
    """Writes whole messages to the host, whether or not the descriptor blocks (a socket's
    read and write ends share one non-blocking flag)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        write_all(self.fd, data)


class Started(NamedTuple):
    """A worker's line to the host and its own folder, once it may take jobs."""

    host: LineReader
    out: Out
    out_fd: int
    isolated: bool
    workdir: str
    folders: Folders


def start(settings: WorkerSettings, role: str) -> Started:
    """What every worker does first: take the host's line, make 0/1 harmless, check it is
    PID 1 of its sandbox and untouchable there, and make a folder of its own (workers may
    share the folder they were given)."""
    read_fd, write_fd = _channel(settings)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(null, fd)
    isolated = bool(settings.get("isolated"))
    if isolated:
        if os.getpid() != 1:
            sys.exit(f"the sandbox {role} must be PID 1 of its own PID namespace")
        harden_worker()
    workdir = os.path.join(settings["workdir"], f"{role}-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    folders = Folders(settings["workdir"], workdir, settings.get("scratch", []))
    host = LineReader(read_fd, fds=True)  # the host hands jobs their lines
    return Started(host, Out(write_fd), write_fd, isolated, workdir, folders)


__all__ = ["Out", "Started", "WorkerSettings", "start"]
