"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from codealign.execution import ExecutionConfig

ConfigFor = Callable[..., ExecutionConfig]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("bwrap", marks=pytest.mark.sandbox),
    ],
)
def sandbox_config(request: pytest.FixtureRequest) -> ConfigFor:
    """Each real sandbox in turn: ``sandbox_config(workers=1, ...)`` is its config."""
    if request.param == "docker":
        image = request.getfixturevalue("docker_image")

        def docker(**settings: Any) -> ExecutionConfig:
            return ExecutionConfig(sandbox="docker", image=image, **settings)

        return docker
    from tests.conftest import _require_bwrap

    _require_bwrap()

    def bwrap(**settings: Any) -> ExecutionConfig:
        return ExecutionConfig(sandbox="bwrap", **settings)

    return bwrap
