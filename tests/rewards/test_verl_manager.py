"""Through verl's own reward managers (runs where verl is installed: ``.ci/run`` builds a
venv with it, as verl pins its own transformers): the function loaded the way verl loads
``custom_reward_function`` and called by the batch reward manager and by the reward
loop's naive manager, on a DataProto of token ids decoded by a real tokenizer."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from codealign.rewards import verl as codealign_verl
from codealign.rewards.verl import verl_rows
from codealign.tasks.tiny import tiny_tasks

pytestmark = [pytest.mark.verl, pytest.mark.sandbox]


@pytest.fixture(scope="module", autouse=True)
def verl_ready() -> None:
    if importlib.util.find_spec("verl") is None:
        message = "verl is not installed in this venv (.ci/run builds .venv-verl)"
        if os.environ.get("CODEALIGN_REQUIRE_VERL"):
            pytest.fail(message)
        pytest.skip(message)


def data_proto(tokenizer: object, responses: list[str], rows: list[dict[str, object]]) -> object:
    """verl's batch: left-padded prompts, right-padded responses, the parquet's columns."""
    import numpy as np
    import torch
    from verl import DataProto

    encode = tokenizer.encode  # type: ignore[attr-defined]
    prompts = [encode(str(r["prompt"][0]["content"]))[-16:] for r in rows]  # type: ignore[index]
    answers = [encode(text) for text in responses]
    p_len, r_len = max(map(len, prompts)), max(map(len, answers))
    pad = 0
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([a + [pad] * (r_len - len(a)) for a in answers])
    mask = torch.tensor(
        [
            [0] * (p_len - len(p)) + [1] * len(p) + [1] * len(a) + [0] * (r_len - len(a))
            for p, a in zip(prompts, answers, strict=True)
        ]
    )
    return DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask,
                 "input_ids": torch.cat([prompt_ids, response_ids], 1)},
        non_tensors={key: np.array([r[key] for r in rows], dtype=object)
                     for key in ("data_source", "reward_model", "extra_info")},
    )  # fmt: skip


def test_verls_reward_managers_reward_codealigns_verdicts() -> None:
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.workers.reward_manager.batch import BatchRewardManager

    from codealign.models.tiny import ensure_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    tasks = tiny_tasks("heldout")[:3]
    rows = verl_rows(tasks, "codealign/tiny", "train")
    responses = [f"```python\n{t.prompt}{t.canonical_solution}```" for t in tasks]
    responses[2] = "```python\ndef other():\n    return 0\n```"

    # Loaded as verl loads it: from the file, with reward_kwargs bound.
    def config(name: str) -> object:
        return OmegaConf.create({"reward": {"custom_reward_function": {
            "path": str(Path(codealign_verl.__file__)), "name": name,
            "reward_kwargs": {"execution": {"sandbox": "bwrap", "workers": 2}}}}})  # fmt: skip

    batch_fn = get_custom_reward_fn(config("compute_score_batch"))
    manager = BatchRewardManager(tokenizer, 0, batch_fn)
    result = manager(data_proto(tokenizer, responses, rows), return_dict=True)
    rewards = result["reward_tensor"].sum(-1).tolist()
    assert rewards == [1.0, 1.0, 0.0]
    assert result["reward_extra_info"]["acc"] == [1.0, 1.0, 0.0]

    # The reward loop awaits one call per response: the plain function runs in verl's
    # executor threads, the async one gathers the concurrent calls into one batch.
    data = data_proto(tokenizer, responses, rows)
    for name in ("compute_score", "compute_score_async"):
        naive = NaiveRewardManager(config(name), tokenizer, get_custom_reward_fn(config(name)))

        async def each(manager: NaiveRewardManager = naive) -> list[float]:
            outs = [manager.run_single(data[i : i + 1]) for i in range(len(data))]
            return [out["reward_score"] for out in await asyncio.gather(*outs)]

        assert naive.loop.run_until_complete(each()) == [1.0, 1.0, 0.0], name
