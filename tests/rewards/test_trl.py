"""codealign's verdicts as TRL reward functions: TRL's call shape (plain and chat
completions, the dataset's columns as keywords), the task found by column or by prompt,
and TRL's GRPOTrainer training the tiny model with them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from codealign.errors import InputError
from codealign.prompting import cut_at_stops, instruction
from codealign.rewards.trl import ExecutionReward, ScoreReward
from codealign.rewards.verifier import Answer, Verifier
from codealign.settings.execution import ExecutionConfig
from codealign.settings.model import HUMAN_EVAL_STOPS
from codealign.tasks.tiny import tiny_tasks

pytestmark = pytest.mark.sandbox
BWRAP = ExecutionConfig(sandbox="bwrap", workers=2)
TASKS = tiny_tasks("heldout")[:4]


@pytest.fixture(scope="module")
def reward() -> Iterator[ExecutionReward]:
    made = ExecutionReward(TASKS, execution=BWRAP, heldback_fraction=0.25, heldback_min_tests=3)
    yield made
    made.close()


def test_plain_completions_by_task_column_with_the_monitor_logged(
    reward: ExecutionReward,
) -> None:
    """Each completion continues its task's prompt; the ``task_id`` column names the task.
    Right answers get 1, a wrong one 0; a continuation past the function (a stop
    sequence) is cut as human-eval cuts it."""
    right = [t.canonical_solution or "" for t in TASKS[:2]]
    completions = [right[0], "    return None\n", right[1] + "\nprint('side effect')\n"]
    task_ids = [TASKS[0].task_id, TASKS[0].task_id, TASKS[1].task_id]
    logged: dict[str, float] = {}
    rewards = reward(
        prompts=[TASKS[0].prompt, TASKS[0].prompt, TASKS[1].prompt],
        completions=completions,
        completion_ids=[[1], [2], [3]],
        task_id=task_ids,
        trainer_state=None,
        log_metric=logged.__setitem__,
    )
    assert rewards == [1.0, 0.0, 1.0]
    # Every task here holds 1 of its 3-4 tests back: the monitor is logged beside.
    assert logged["codealign/monitored"] == 3.0
    assert logged["codealign/heldback_tests_pass_rate"] == pytest.approx(2 / 3)
    assert logged["codealign/heldback_gap"] == pytest.approx(0.0)


def test_chat_completions_found_by_their_prompt(reward: ExecutionReward) -> None:
    """No task column: the task whose instruction is the chat prompt's user message. The
    answer's fenced code is the program; a body alone continues the task's prompt."""
    task = TASKS[2]
    prompt = [{"role": "user", "content": instruction(task)}]
    whole = task.prompt + (task.canonical_solution or "")
    completions = [
        [{"role": "assistant", "content": f"Here it is:\n```python\n{whole}```\nDone."}],
        [{"role": "assistant", "content": f"```python\n{task.canonical_solution}```"}],
        [{"role": "assistant", "content": "```python\ndef nothing():\n    pass\n```"}],
    ]
    assert reward(prompts=[prompt] * 3, completions=completions) == [1.0, 1.0, 0.0]
    binary = ExecutionReward(reward.verifier, reward="passed")
    templated = f"<|im_start|>user\n{task.prompt}<|im_end|>"  # a template around the prompt
    assert binary(prompts=[templated], completions=[task.canonical_solution or ""]) == [1.0]


def test_a_completion_of_no_known_task_is_refused(reward: ExecutionReward) -> None:
    with pytest.raises(InputError, match="no task's prompt is in its prompt"):
        reward(prompts=["def unrelated():\n"], completions=["    pass\n"])
    with pytest.raises(InputError, match="is not a task"):
        reward(prompts=["x"], completions=["y"], task_id=["tiny/none"])


class Recording(ExecutionReward):
    """The reward TRL calls, keeping every batch it was given and what it returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[list[str], list[str], list[float]]] = []

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float]:
        rewards = super().__call__(prompts, completions, **kwargs)
        self.calls.append((list(kwargs["task_id"]), list(completions), rewards))
        return rewards


@pytest.mark.integration
def test_grpo_trainer_trains_the_tiny_model_on_codealigns_reward(tmp_path: Path) -> None:
    """TRL's own GRPOTrainer, 3 steps on the CPU: the per-step reward it logs is the mean
    of what codealign returned, and a fresh verifier scoring the same completions gives
    the same rewards (execution and the full weighted score alike)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from codealign.models.tiny import ensure_tiny_model

    path = ensure_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    train = tiny_tasks("train")[:12]
    dataset = Dataset.from_list([{"prompt": t.prompt, "task_id": t.task_id} for t in train])
    execution = Recording(train, execution=BWRAP)
    score = ScoreReward(execution.verifier)
    config = GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=4,
        max_completion_length=24, max_steps=3, logging_steps=1, learning_rate=1e-4,
        report_to=[], use_cpu=True, save_strategy="no", seed=0, temperature=1.0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model, reward_funcs=[execution, score], args=config, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[execution.callback()],
    )  # fmt: skip
    trainer.train()
    steps = [row for row in trainer.state.log_history if "rewards/codealign_execution/mean" in row]
    assert len(steps) == 3 and len(execution.calls) == 3
    fresh = Verifier(train, execution=BWRAP)
    for row, (task_ids, completions, rewards) in zip(steps, execution.calls, strict=True):
        assert len(rewards) == 8
        assert row["rewards/codealign_execution/mean"] == pytest.approx(sum(rewards) / 8, abs=1e-6)
        cut = [cut_at_stops(c, HUMAN_EVAL_STOPS) for c in completions]  # as human-eval cuts
        again = fresh.verify(
            [Answer(t, completion=c) for t, c in zip(task_ids, cut, strict=True)], score=True
        )
        assert [v.pass_rate for v in again] == pytest.approx(rewards)
        scores = [v.score or 0.0 for v in again]
        assert row["rewards/codealign_score/mean"] == pytest.approx(sum(scores) / 8, abs=1e-5)
        assert not any(math.isnan(s) for s in scores)
    fresh.close()
    assert execution.verifier._holder[0] is None  # the callback closed the pool
    (tmp_path / "log.json").write_text(json.dumps(trainer.state.log_history))
