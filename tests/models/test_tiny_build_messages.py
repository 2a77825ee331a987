"""What a first run says while it builds the tiny model, and that a cached model says
nothing: a real build of a small recipe, in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codealign.models.tiny import TinyRecipe, ensure_tiny_model

SMALL = TinyRecipe(
    seed=7,
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    layers=1,
    heads=2,
    sft_examples=48,
    epochs=1,
    batch_size=16,
    warmup_steps=2,
)


def test_a_build_is_announced_and_timed_and_a_cached_model_is_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    logged: list[str] = []
    path = ensure_tiny_model(SMALL, log=logged.append)
    assert (path / "model.safetensors").exists()
    assert json.loads((path / "codealign-recipe.json").read_text())["sft_examples"] == 48
    announce, done = logged
    # Said before anything is built: what, how much work, that it happens once, and where.
    assert "first run" in announce and "tiny model" in announce
    assert "3 SFT steps" in announce and str(path) in announce
    assert "about 2 min" not in announce  # the reference time is the default recipe's
    assert done.startswith("codealign: tiny model built in ")
    for phase in ("data", "tokenizer", "SFT", "saving"):
        assert f"{phase} " in done
    assert "tiny model SFT" in capsys.readouterr().err  # the progress bar, on stderr

    assert ensure_tiny_model(SMALL, log=logged.append) == path
    assert len(logged) == 2  # cached: nothing said, no bar
    assert capsys.readouterr() == ("", "")


def test_the_default_recipe_announces_its_reference_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))

    def fake_build(out: Path, recipe: TinyRecipe, **_: object) -> Path:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setattr("codealign.models.tiny.build_tiny_model", fake_build)
    logged: list[str] = []
    ensure_tiny_model(log=logged.append)
    assert "375 SFT steps" in logged[0] and "about 2 min on 2 CPU cores" in logged[0]


def test_a_quiet_build_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    ensure_tiny_model(SMALL, log=None)
    captured = capsys.readouterr()
    # (transformers' own bar for writing the weights is not ours to silence)
    assert captured.out == "" and "codealign" not in captured.err
    assert "tiny model SFT" not in captured.err
