"""Programming tasks and the loaders that read them from every supported source."""

from codealign.tasks.load import BUILTIN_TASK_SETS, FORMATS, load_tasks
from codealign.tasks.model import (
    AssertsSuite,
    CheckSuite,
    IOCase,
    IOSuite,
    PromptStyle,
    PytestSuite,
    Task,
    TestSuite,
)

__all__ = [
    "BUILTIN_TASK_SETS",
    "FORMATS",
    "AssertsSuite",
    "CheckSuite",
    "IOCase",
    "IOSuite",
    "PromptStyle",
    "PytestSuite",
    "Task",
    "TestSuite",
    "load_tasks",
]
