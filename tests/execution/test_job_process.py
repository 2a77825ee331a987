"""A job's process as its worker sees it: output, exit and deadline, with the exit
noticed by a pidfd where the kernel has them and by polling where it does not."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from codealign.sandbox.job_process import Capture, Supervised


def _writes_then_exits(job: Any, fds: tuple[int, int, int, int, int]) -> None:
    os.setsid()  # as every job's process does: killed with its group
    os.write(fds[1], b"out\n")
    time.sleep(float(job["sleep"]))
    os._exit(int(job["code"]))


def _watch(job: dict[str, Any], deadline_s: float) -> tuple[Supervised, bool, Capture]:
    stdout, stderr = Capture(1 << 16), Capture(1 << 16)
    proc = Supervised(_writes_then_exits, job, stdout, stderr, 1 << 16)  # type: ignore[arg-type]
    proc.close_input()
    deadline = time.monotonic() + deadline_s
    while not proc.finished and time.monotonic() < deadline:
        proc.poll(min(0.02, deadline - time.monotonic()), [])
    exited = proc.wait_exit(deadline)
    proc.close(own_pid_namespace=False)
    return proc, exited, stdout


def _refused(pid: int, flags: int = 0) -> int:
    raise OSError(38, "Function not implemented")  # a kernel before 5.3


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polled"])
def test_the_exit_code_and_output_are_collected(
    pidfds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfds:
        monkeypatch.setattr(os, "pidfd_open", _refused, raising=False)
    proc, exited, stdout = _watch({"sleep": 0.05, "code": 3}, 10.0)
    assert exited and proc.exit_code == 3
    assert stdout.text() == "out\n"
    assert proc._pidfd == -1  # closed with the process, either way


@pytest.mark.parametrize("pidfds", [True, False], ids=["pidfd", "polled"])
def test_a_process_past_its_deadline_is_reported_and_killed(
    pidfds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfds:
        monkeypatch.setattr(os, "pidfd_open", _refused, raising=False)
    proc, exited, _ = _watch({"sleep": 30, "code": 0}, 0.3)
    assert not exited
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)  # killed and reaped by close
