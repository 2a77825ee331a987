"""codealign's verdicts as TRL reward functions (``GRPOTrainer(reward_funcs=[...])``, and
every TRL trainer that takes ``reward_funcs``).

    from codealign.rewards.trl import ExecutionReward, ScoreReward

    passes = ExecutionReward(tasks="humaneval")          # the reward tests' pass rate
    trainer = GRPOTrainer(model, reward_funcs=[passes], train_dataset=dataset,
                          callbacks=[passes.callback()])

A call takes TRL's shape: ``prompts`` and ``completions`` (plain text, or chat message
lists) and the dataset's columns as keyword arguments. The task of each completion is
the dataset's ``task_id`` column (any column: ``task_column``), or else the task whose
prompt the prompt is or holds. One call runs the whole batch through one long-lived
sandbox pool; ``callback()`` closes it when training ends (so do ``close()`` and exit).
The held-back tests never reach the reward; their pass rate is logged beside it through
TRL's ``log_metric`` (``codealign/heldback_tests_pass_rate`` and the gap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from codealign.errors import InputError
from codealign.prompting import answer_fields, instruction
from codealign.rewards.verifier import (
    Answer,
    TaskSource,
    Verdict,
    Verifier,
    monitor_summary,
)
from codealign.settings.execution import ExecutionConfig
from codealign.settings.model import HUMAN_EVAL_STOPS
from codealign.settings.scoring import ScoringConfig
from codealign.tasks import Task

Completion = str | Sequence[Mapping[str, Any]]


def _text(message: Completion) -> str:
    """A plain completion, or a chat completion's last message content."""
    if isinstance(message, str):
        return message
    if not message:
        return ""
    content = message[-1].get("content", "")
    if isinstance(content, list):  # multimodal content parts: their text
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return str(content)


class _CodealignReward:
    """What both reward functions share: the verifier, the task lookup, the call shape."""

    __name__: str

    def __init__(
        self,
        tasks: TaskSource | Verifier,
        *,
        name: str,
        task_column: str = "task_id",
        stop: Sequence[str] = HUMAN_EVAL_STOPS,
        execution: ExecutionConfig | None = None,
        scoring: ScoringConfig | None = None,
        heldback_fraction: float = 0.25,
        heldback_min_tests: int = 4,
    ) -> None:
        self.verifier = (
            tasks
            if isinstance(tasks, Verifier)
            else Verifier(
                tasks,
                execution=execution,
                scoring=scoring,
                heldback_fraction=heldback_fraction,
                heldback_min_tests=heldback_min_tests,
            )
        )
        self.__name__ = name  # TRL names the logged reward after it
        self.task_column = task_column
        self.stop = tuple(stop)
        self._by_prompt: dict[str, Task] = {}
        for task in self.verifier.tasks.values():
            self._by_prompt.setdefault(task.prompt, task)
            self._by_prompt.setdefault(instruction(task), task)

    def _task_of(self, index: int, prompt: Completion, columns: Mapping[str, Any]) -> Task:
        column = columns.get(self.task_column)
        if column is not None:
            return self.verifier.resolve(column[index])
        text = _text(prompt) if not isinstance(prompt, str) else prompt
        found = self._by_prompt.get(text)
        if found is None:  # a template around the prompt: the longest task prompt inside
            inside = [p for p in self._by_prompt if p and p in text]
            found = self._by_prompt[max(inside, key=len)] if inside else None
        if found is None:
            raise InputError(
                f"completion {index}: no {self.task_column!r} column, and no task's prompt "
                f"is in its prompt {text[:60]!r}"
            )
        return found

    def verdicts(
        self,
        prompts: Sequence[Completion],
        completions: Sequence[Completion],
        *,
        score: bool,
        **columns: Any,
    ) -> list[Verdict]:
        """Run the batch; logs the monitor through TRL's ``log_metric`` when given."""
        if len(prompts) != len(completions):
            raise InputError(f"{len(prompts)} prompts for {len(completions)} completions")
        answers = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            task = self._task_of(i, prompt, columns)
            fields = answer_fields(
                task, _text(completion), chat=not isinstance(completion, str), stop=self.stop
            )
            answers.append(Answer(task.task_id, fields.get("completion"), fields.get("solution")))
        verdicts = self.verifier.verify(answers, score=score)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for key, value in monitor_summary(verdicts).items():
                log_metric(f"codealign/{key}", value)
        return verdicts

    def close(self) -> None:
        """End the sandbox pool."""
        self.verifier.close()

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that closes the pool when training ends."""
        from transformers import TrainerCallback

        reward = self

        class CloseSandboxes(TrainerCallback):
            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                reward.close()

        return CloseSandboxes()


class ExecutionReward(_CodealignReward):
    """The execution reward: the pass rate on the task's reward tests (``reward="passed"``:
    1 when every one passes, else 0)."""

    def __init__(
        self,
        tasks: TaskSource | Verifier,
        *,
        reward: Literal["pass_rate", "passed"] = "pass_rate",
        name: str = "codealign_execution",
        **options: Any,
    ) -> None:
        if reward not in ("pass_rate", "passed"):
            raise InputError(f"reward must be pass_rate or passed, got {reward!r}")
        super().__init__(tasks, name=name, **options)
        self.reward = reward

    def __call__(
        self, prompts: Sequence[Completion], completions: Sequence[Completion], **kwargs: Any
    ) -> list[float]:
        verdicts = self.verdicts(prompts, completions, score=False, **kwargs)
        if self.reward == "passed":
            return [float(v.passed) for v in verdicts]
        return [v.pass_rate for v in verdicts]


class ScoreReward(_CodealignReward):
    """codealign's full weighted score: pass rate (x3), ruff, mypy and the readability
    model, as ``codealign score`` computes it (``scoring`` sets the weights)."""

    def __init__(
        self,
        tasks: TaskSource | Verifier,
        *,
        name: str = "codealign_score",
        **options: Any,
    ) -> None:
        super().__init__(tasks, name=name, **options)

    def __call__(
        self, prompts: Sequence[Completion], completions: Sequence[Completion], **kwargs: Any
    ) -> list[float]:
        verdicts = self.verdicts(prompts, completions, score=True, **kwargs)
        return [float(v.score or 0.0) for v in verdicts]
