"""The embedded tiny model: cache keys, reuse, and (integration) a real build and eval."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from codealign.cache import cache_root
from codealign.cli import main
from codealign.models import tiny
from codealign.models.tiny import TinyRecipe, ensure_tiny_model


def test_recipe_key_follows_every_field_and_the_task_recipe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = TinyRecipe()
    keys = {
        dataclasses.replace(base, **{f.name: getattr(base, f.name) + 1}).key()
        for f in dataclasses.fields(base)
    }
    assert base.key() not in keys and len(keys) == len(dataclasses.fields(base))
    before = base.key()
    assert TinyRecipe().key() == before  # stable
    monkeypatch.setattr("codealign.tasks.tiny.RECIPE_VERSION", 999)
    assert TinyRecipe().key() != before


def test_a_built_model_is_reused_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))
    recipe = TinyRecipe(seed=123)
    built: list[Path] = []

    def fake_build(out: Path, recipe: TinyRecipe, **_: object) -> Path:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        built.append(out)
        return out

    monkeypatch.setattr(tiny, "build_tiny_model", fake_build)
    first = ensure_tiny_model(recipe, log=lambda *_: None)
    second = ensure_tiny_model(recipe, log=lambda *_: None)
    assert first == second == cache_root() / "models" / f"tiny-{recipe.key()}"
    assert len(built) == 1
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".build-")]


def test_a_failed_build_leaves_nothing_half_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path))

    def broken(out: Path, recipe: TinyRecipe, **_: object) -> Path:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(tiny, "build_tiny_model", broken)
    with pytest.raises(RuntimeError):
        ensure_tiny_model(TinyRecipe(seed=5), log=lambda *_: None)
    models = cache_root() / "models"
    assert not [p for p in models.iterdir() if p.is_dir()]


@pytest.mark.integration
def test_tiny_model_builds_and_has_room_to_improve(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                "--model",
                "tiny",
                "--tasks",
                "tiny-heldout",
                "--n",
                "10",
                "--k",
                "1,10",
                "--json",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert 0.10 <= report["pass@1"] <= 0.60, report["pass@1"]
    assert report["pass@10"] >= report["pass@1"]
    started = time.perf_counter()
    path = ensure_tiny_model(log=lambda *_: pytest.fail("the cached model was rebuilt"))
    assert time.perf_counter() - started < 5 and (path / "tokenizer.json").exists()
