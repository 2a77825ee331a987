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


def _require_docker_image(image: str) -> None:
    """Docker tests need a daemon; the image is built here (offline if need be) when missing."""
    from codealign.execution.docker_image import build_image
    from codealign.execution.docker_pool import daemon_problem, image_present

    problem = daemon_problem(timeout=10)
    if problem is not None:
        message = f"Docker is not available ({problem}); start dockerd to run this test"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the Docker tests")
        pytest.skip(message)
    if not image_present(image):
        build_image(image, log=lambda line: None)


@pytest.fixture(scope="session")
def docker_image() -> str:
    image = "codealign-sandbox:latest"
    _require_docker_image(image)
    return image


@pytest.fixture
def docker_config(docker_image: str) -> ExecutionConfig:
    return ExecutionConfig(sandbox="docker", image=docker_image, workers=2, timeout_s=3.0)
