"""What every signal takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from codealign.execution.records.results import ExecResult
from codealign.samples import Sample
from codealign.tasks import Task


@dataclass(frozen=True)
class Item:
    """One sample to score: its task, the sample, its execution result and its program."""

    task: Task
    sample: Sample
    result: ExecResult | None
    program: str

    @property
    def response(self) -> str:
        """What the model wrote: the completion, or the whole solution."""
        if self.sample.completion is not None:
            return self.sample.completion
        return self.sample.solution or ""

    @cached_property
    def parses(self) -> bool:
        """Whether the program compiles: a parse, and the compiler's own checks (a
        repeated keyword argument, ``return`` outside a function), which ruff and mypy
        would otherwise meet as errors that stop their whole batch. Any failure counts
        (too deep a nesting ends in RecursionError, MemoryError or SyntaxError): it is
        this program's, never the batch's. Computed once: every signal asks."""
        try:
            compile(self.program, "<sample>", "exec", dont_inherit=True)
        except Exception:
            return False
        return True


@dataclass(frozen=True)
class SignalValue:
    """A value in [0, 1] (higher is better) and what it was computed from."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)
