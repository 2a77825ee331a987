"""The default readability model: its cache key, its build through the model cache, and
(integration) the real model, built from the tiny backbone, on pairs no generator made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from codealign.cache import cache_root
from codealign.models.reward import RewardModel
from codealign.readability import default_model
from codealign.readability.default_model import (
    default_model_key,
    ensure_default_readability_model,
)
from codealign.readability.scorer import ReadabilityScorer
from codealign.training.reward_model import evaluate_pairs, load_pairs

HANDWRITTEN = Path(__file__).parent.parent / "data" / "readability_handwritten.jsonl"


def test_key_follows_the_data_the_recipe_and_the_backbone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = default_model_key()
    assert default_model_key() == before and len(before) == 16
    for target, value in (
        ("codealign.readability.pairs.DATA_VERSION", 999),
        ("codealign.readability.default_model.DEFAULT_VERSION", 999),
        ("codealign.tasks.tiny.RECIPE_VERSION", 999),  # the tiny backbone's key
    ):
        with monkeypatch.context() as patch:
            patch.setattr(target, value)
            assert default_model_key() != before, target
    assert default_model_key() == before


def test_built_once_into_the_model_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    trained: list[Path] = []

    def fake_train(
        records: list[dict[str, Any]], config: Any, out: Path, **_: Any
    ) -> dict[str, Any]:
        assert records and config == default_model.default_config()
        out.mkdir(parents=True)
        (out / "reward_model.json").write_text("{}")
        trained.append(out)
        return {"heldout_accuracy": 1.0}

    pair = {"prompt": "p", "chosen": "c", "rejected": "r"}
    monkeypatch.setattr("codealign.training.reward_model.train_reward_model", fake_train)
    monkeypatch.setattr("codealign.readability.pairs.builtin_pairs", lambda **_: ([], {"kept": 1}))
    monkeypatch.setattr("codealign.readability.pairs.pair_records", lambda pairs: [pair])
    logged: list[str] = []
    first = ensure_default_readability_model(log=logged.append)
    assert first == cache_root() / "models" / f"readability-{default_model_key()}"
    assert json.loads((first / "pair_counts.json").read_text()) == {"kept": 1}
    assert len(trained) == 1 and len(logged) == 2
    assert ensure_default_readability_model(log=logged.append) == first
    assert len(trained) == 1 and len(logged) == 2  # reused: no training, nothing logged


@pytest.mark.integration
def test_default_model_generalises_to_held_out_families() -> None:
    path = ensure_default_readability_model()
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["heldout_pairs"] >= 100
    # Float rounding moves it: from the same pairs and seed, 0.898 when training runs in a
    # fresh process and 0.920 after the pair checks ran in the same one (measured on 2
    # cores). The bar is well clear of chance (0.5) and below that spread.
    assert metrics["heldout_accuracy"] >= 0.85, metrics
    again = ensure_default_readability_model(log=lambda *_: pytest.fail("retrained"))
    assert again == path


@pytest.mark.integration
def test_handwritten_pairs_no_generator_made() -> None:
    pairs = load_pairs(HANDWRITTEN)
    assert len(pairs) >= 20
    path = ensure_default_readability_model()
    accuracy = evaluate_pairs(RewardModel.load(path, device="auto"), pairs)["accuracy"]
    # 18 of 25 or better: a coin would do that less than 3% of the time.
    assert accuracy >= 0.72, accuracy
    scores = ReadabilityScorer().score([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    assert all(0.0 <= s.mean <= 1.0 and s.std == 0.0 for s in scores)
