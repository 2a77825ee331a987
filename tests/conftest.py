"""Shared fixtures. Sandbox tests skip where bubblewrap is missing, except in CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from codealign.execution import ExecutionConfig
from codealign.settings.execution import DEFAULT_IMAGE


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
    from codealign.execution.backends.docker_image import build_image
    from codealign.execution.backends.docker_pool import daemon_problem, image_present

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
    image = DEFAULT_IMAGE
    _require_docker_image(image)
    return image


@pytest.fixture
def docker_config(docker_image: str) -> ExecutionConfig:
    return ExecutionConfig(sandbox="docker", image=docker_image, workers=2, timeout_s=3.0)


CORPUS = [
    "def add(a, b):\n    return a + b\n",
    'def scale(x: int) -> int:\n    """Return x times 3 plus 5."""\n    return x * 3 + 5\n',
    "class Point:\n    pass\n\nif __name__ == '__main__':\n    print(add(1, 2))\n",
    "# a comment\nvalues = [v + 1 for v in range(10)]\n",
]


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with its own small tokenizer, built in seconds."""
    import torch

    from codealign.models.tiny import TinyRecipe, tiny_llama, train_tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    tokenizer = train_tokenizer(CORPUS * 20, 300)
    recipe = TinyRecipe(hidden_size=64, intermediate_size=128, layers=2, heads=4, max_positions=128)
    model = tiny_llama(len(tokenizer), recipe, tokenizer.eos_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def vllm_ready() -> None:
    """vLLM tests run in a venv of their own (vllm pins its torch); elsewhere they skip,
    unless CODEALIGN_REQUIRE_VLLM says this venv must have it."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        message = "vllm is not installed in this venv (see docs/development.md: the vLLM venv)"
        if os.environ.get("CODEALIGN_REQUIRE_VLLM"):
            pytest.fail(message)
        pytest.skip(message)
