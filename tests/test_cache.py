"""The model cache helper (codealign.cache): where models live, one build under a lock,
and nothing half-built left behind."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from codealign.cache import BuildClock, cache_root, ensure_built, format_duration, locked, model_dir


def test_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CODEALIGN_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_root() == Path.home() / ".cache" / "codealign"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "codealign"
    monkeypatch.setenv("CODEALIGN_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert model_dir("tiny-abc") == tmp_path / "mine" / "models" / "tiny-abc"


def _write_model(out: Path) -> None:
    out.mkdir()
    (out / "config.json").write_text("{}")


def test_a_second_builder_waits_on_the_lock_and_reuses_the_first_model(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m-1"
    started, release = threading.Event(), threading.Event()
    built: list[str] = []
    results: dict[str, Path] = {}

    def slow_build(out: Path) -> None:
        built.append("first")
        started.set()
        assert release.wait(10)
        _write_model(out)

    def second_build(out: Path) -> None:
        built.append("second")
        _write_model(out)

    def run(name: str, build: Callable[[Path], None]) -> None:
        results[name] = ensure_built(target, "config.json", build)

    first = threading.Thread(target=run, args=("first", slow_build))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=run, args=("second", second_build))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second builder did not wait for the first one's lock"
    assert not target.exists()  # nothing visible before the first build finishes
    release.set()
    first.join(10)
    second.join(10)
    assert results == {"first": target, "second": target}
    assert built == ["first"]
    assert (target / "config.json").exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".build-")]


def test_a_failed_build_leaves_no_target_and_no_temporary_folder(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m-2"

    def broken(out: Path) -> None:
        _write_model(out)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_built(target, "config.json", broken)
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.is_dir()]
    # and the next try builds it
    assert ensure_built(target, "config.json", _write_model) == target
    assert (target / "config.json").exists()


def test_an_existing_model_is_returned_without_building(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m-3"
    target.parent.mkdir(parents=True)
    _write_model(target)

    def never(out: Path) -> None:
        pytest.fail("rebuilt")

    assert ensure_built(target, "config.json", never) == target


def test_a_builder_that_has_to_wait_says_so(tmp_path: Path) -> None:
    target = tmp_path / "models" / "m-4"
    target.parent.mkdir(parents=True)
    logged: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locked(target.parent / ".m-4.lock"):
            holding.set()
            assert release.wait(10)
            _write_model(target)

    other = threading.Thread(target=hold)
    other.start()
    assert holding.wait(10)
    threading.Timer(0.2, release.set).start()
    assert ensure_built(target, "config.json", _write_model, log=logged.append) == target
    other.join(10)
    assert logged == ["codealign: another process is building m-4; waiting for it"]
    # an uncontended build says nothing about waiting
    assert ensure_built(tmp_path / "models" / "m-5", "config.json", _write_model, log=logged.append)
    assert len(logged) == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (42.4, "42s"), (59.6, "1m00s"), (185, "3m05s"), (3725, "1h02m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_build_clock_sums_each_phase_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("codealign.cache.time.perf_counter", lambda: now[0])
    clock = BuildClock()
    for name, seconds in (("data", 3.0), ("SFT", 120.0), ("data", 2.0)):
        with clock.phase(name):
            now[0] += seconds
    now[0] += 1.0
    assert clock.summary() == "2m06s (data 5s, SFT 2m00s)"
    assert clock.phases == {"data": 5.0, "SFT": 120.0}
