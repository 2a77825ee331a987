"""What a first run says while it trains the default readability model, and that a
cached model says nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from codealign.readability.default_model import ensure_default_readability_model


def test_training_is_announced_and_timed_and_a_cached_model_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    calls: list[str] = []

    def fake_pairs(**kwargs: Any) -> tuple[list[Any], dict[str, int]]:
        calls.append(f"pairs progress={kwargs.get('progress')}")
        return [], {"kept": 0}

    def fake_train(records: list[Any], config: Any, out: Path, **kwargs: Any) -> dict[str, Any]:
        calls.append(f"train progress={kwargs.get('progress')}")
        out.mkdir(parents=True)
        (out / "reward_model.json").write_text("{}")
        return {"heldout_accuracy": 0.925}

    monkeypatch.setattr("codealign.readability.pairs.builtin_pairs", fake_pairs)
    monkeypatch.setattr("codealign.training.reward_model.train_reward_model", fake_train)
    logged: list[str] = []
    path = ensure_default_readability_model(log=logged.append)
    announce, done = logged
    assert "first run" in announce and "readability model" in announce
    assert "sandbox" in announce and "about 3 min on 2 CPU cores" in announce
    assert str(path) in announce
    assert done.startswith("codealign: readability model trained in ")
    assert "pairs " in done and "training " in done and "0.925" in done
    assert calls == ["pairs progress=True", "train progress=True"]  # bars on

    assert ensure_default_readability_model(log=logged.append) == path
    assert len(logged) == 2 and len(calls) == 2  # cached: nothing said, nothing run


def test_a_quiet_build_asks_for_no_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    seen: list[Any] = []

    def fake_train(records: list[Any], config: Any, out: Path, **kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs.get("progress"))
        out.mkdir(parents=True)
        (out / "reward_model.json").write_text("{}")
        return {}

    monkeypatch.setattr(
        "codealign.readability.pairs.builtin_pairs",
        lambda **kwargs: (seen.append(kwargs.get("progress")), ([], {}))[1],
    )
    monkeypatch.setattr("codealign.training.reward_model.train_reward_model", fake_train)
    ensure_default_readability_model(log=None)
    assert seen == [False, False]
