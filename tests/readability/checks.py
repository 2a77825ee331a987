"""Helpers the readability tests share."""

from __future__ import annotations

from typing import Any

from codealign.tasks import AssertsSuite, Task


def tiny_passes(task: Task, program: str) -> bool:
    """Whether ``program`` passes a tiny task's asserts, run on the host (trusted code)."""
    assert isinstance(task.tests, AssertsSuite)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(program, "<tiny>", "exec"), namespace)
        for line in task.tests.asserts:
            exec(line, namespace)
    except Exception:
        return False
    return True
