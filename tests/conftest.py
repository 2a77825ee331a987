"""Shared fixtures. Sandbox tests skip where bubblewrap is missing, except in CI."""

from __future__ import annotations

import os
import shutil

import pytest

from codealign.execution import ExecutionConfig


def _require_bwrap() -> None:
    if shutil.which("bwrap") is None:
        message = "bubblewrap is not installed (apt-get install bubblewrap to run this test)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the sandbox tests")
        pytest.skip(message)


@pytest.fixture
def bwrap_config() -> ExecutionConfig:
    _require_bwrap()
    return ExecutionConfig(sandbox="bwrap", workers=2, timeout_s=3.0)
