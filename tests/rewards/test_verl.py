"""codealign's verdicts as verl's reward, called with verl's own argument shapes: the
batch reward manager's keyword arrays, the naive manager's one row, and the parquet
``codealign verl-data`` writes for verl's RLHFDataset read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from codealign.cli import main
from codealign.errors import InputError
from codealign.rewards.verl import compute_score, compute_score_batch
from codealign.tasks.native import to_native
from codealign.tasks.tiny import tiny_tasks

pytestmark = pytest.mark.sandbox
EXECUTION = {"sandbox": "bwrap", "workers": 2}


def fenced(code: str) -> str:
    return f"Sure:\n```python\n{code}```"


def test_the_parquet_verl_reads_and_the_batch_manager_call(tmp_path: Path) -> None:
    """``verl-data`` rows carry their tasks; the batch call takes numpy object arrays, as
    verl's BatchRewardManager passes them, and returns one dict per response."""
    out = tmp_path / "train.parquet"
    assert main(["verl-data", "--tasks", "tiny-heldout", "--out", str(out),
                 "--data-source", "codealign/tiny"]) == 0  # fmt: skip
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 96 and not list(tmp_path.glob("*.tmp"))
    first = rows[0]
    assert first["data_source"] == "codealign/tiny" and first["ability"] == "code"
    assert first["prompt"][0]["role"] == "user" and "def " in first["prompt"][0]["content"]
    assert first["reward_model"]["style"] == "rule"
    assert first["extra_info"]["task_id"] == "tiny/0408"
    tasks = tiny_tasks("heldout")[:4]
    responses = [fenced(t.prompt + (t.canonical_solution or "")) for t in tasks]
    responses[3] = fenced("def something_else():\n    return 0\n")
    scores = compute_score_batch(
        data_sources=np.array([r["data_source"] for r in rows[:4]], dtype=object),
        solution_strs=np.array(responses, dtype=object),
        ground_truths=np.array([r["reward_model"]["ground_truth"] for r in rows[:4]], dtype=object),
        extra_infos=np.array([r["extra_info"] for r in rows[:4]], dtype=object),
        execution=EXECUTION,
    )
    assert [s["score"] for s in scores] == [1.0, 1.0, 1.0, 0.0]
    assert [s["acc"] for s in scores] == [1.0, 1.0, 1.0, 0.0]
    assert set(scores[0]) == {"score", "acc", "pass_rate", "heldback_pass_rate", "monitored"}
    # tiny tasks have 3-4 asserts: those with 4 hold one back from the reward.
    assert any(s["monitored"] == 1.0 for s in scores)


def test_one_row_naming_its_task_and_the_errors() -> None:
    """The naive manager's call; ground_truth as a task id from a named source, or the
    task record itself; a raw continuation when extra_info says so."""
    task = tiny_tasks("heldout")[5]
    info = {"codealign_tasks": "tiny-heldout"}
    assert compute_score("x", fenced(task.prompt + (task.canonical_solution or "")),
                         task.task_id, info, execution=EXECUTION)["score"] == 1.0  # fmt: skip
    raw = {"prompt_format": "completion"}
    record = to_native(task)
    assert compute_score("x", task.canonical_solution or "", record, raw, execution=EXECUTION,
                         reward="passed")["score"] == 1.0  # fmt: skip
    assert compute_score("x", "    return None\n", json.dumps(record), raw,
                         execution=EXECUTION)["pass_rate"] == 0.0  # fmt: skip
    with pytest.raises(InputError, match="no task source"):
        compute_score("x", "y", task.task_id, {}, execution=EXECUTION)
    with pytest.raises(InputError, match="not valid JSON"):
        compute_score("x", "y", "{broken", {}, execution=EXECUTION)
    with pytest.raises(InputError, match="ground_truth is not a task"):
        compute_score("x", "y", {"task_id": "t"}, {}, execution=EXECUTION)
    with pytest.raises(InputError, match="reward must be one of"):
        compute_score("x", "y", record, {}, reward="best")


def test_concurrent_async_calls_run_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """verl's reward loop awaits one call per response: the calls that arrive together go
    through the pool as one batch; a bad row fails alone, its neighbours still scored."""
    import asyncio

    from codealign.rewards import verifier as verifier_module
    from codealign.rewards.verl import compute_score_async

    batches: list[int] = []
    verify = verifier_module.Verifier.verify

    def counting(self: verifier_module.Verifier, answers: list[object], **kw: object) -> object:
        batches.append(len(answers))
        return verify(self, answers, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier_module.Verifier, "verify", counting)
    tasks = tiny_tasks("heldout")[:5]
    truths = [json.dumps(to_native(t)) for t in tasks]
    answers = [fenced(t.prompt + (t.canonical_solution or "")) for t in tasks]
    answers[4] = fenced("def other():\n    return 0\n")

    async def together(rows: list[tuple[str, str]]) -> list[object]:
        calls = [compute_score_async("x", a, g, {}, execution=EXECUTION) for a, g in rows]
        return await asyncio.gather(*calls, return_exceptions=True)

    scores = asyncio.run(together(list(zip(answers, truths, strict=True))))
    assert [s["score"] for s in scores] == [1.0, 1.0, 1.0, 1.0, 0.0]  # type: ignore[index]
    assert batches == [5]
    batches.clear()
    mixed = asyncio.run(
        together([(answers[0], truths[0]), ("x", "{broken"), (answers[1], truths[1])])
    )
    assert isinstance(mixed[1], InputError) and "not valid JSON" in str(mixed[1])
    assert [mixed[0]["score"], mixed[2]["score"]] == [1.0, 1.0]  # type: ignore[index]
