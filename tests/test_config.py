from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from codealign.errors import InputError
from codealign.execution import ExecutionConfig
from codealign.settings.model import SamplingConfig
from codealign.settings.sources import (
    SECTIONS,
    add_config_arguments,
    build_config,
    config_from_sources,
    load_config_file,
    parse_overrides,
)

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_are_configs() -> None:
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    data = load_config_file(path)
    for section, values in data.items():
        build_config(SECTIONS[section], values)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, ExecutionConfig)
    parser.add_argument("--config")
    parser.add_argument("--set", dest="overrides", action="append")
    return parser.parse_args(argv)


def test_precedence_defaults_file_overrides_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("execution:\n  timeout_s: 7\n  memory_mb: 100\n  workers: 3\n")
    config = config_from_sources(
        ExecutionConfig,
        _args("--config", str(cfg), "--set", "execution.memory_mb=200", "--workers", "5"),
    )
    assert config.timeout_s == 7.0  # from the file
    assert config.memory_mb == 200  # --set beats the file
    assert config.workers == 5  # an explicit flag beats both
    assert config.file_size_mb == ExecutionConfig().file_size_mb  # default


def test_bool_flag_and_choices() -> None:
    config = config_from_sources(
        ExecutionConfig, _args("--sandbox", "process", "--allow-unisolated")
    )
    assert config.sandbox == "process" and config.allow_unisolated is True


def test_a_setting_on_by_default_is_turned_off_by_its_no_flag() -> None:
    from codealign.cli import build_parser

    parser = build_parser()
    on = config_from_sources(SamplingConfig, parser.parse_args(["sample", "--tasks", "t",
                                                                "--out", "o"]))  # fmt: skip
    args = parser.parse_args(["sample", "--tasks", "t", "--out", "o", "--no-overlap",
                              "--backend", "vllm", "--base-dtype", "bfloat16"])  # fmt: skip
    off = config_from_sources(SamplingConfig, args)
    assert on.overlap is True and on.backend == "hf"
    assert (off.overlap, off.backend, off.base_dtype) == (False, "vllm", "bfloat16")
    args = parser.parse_args(["iterate", "--backend", "vllm", "--set", "sampling.overlap=false"])
    loop = config_from_sources(SamplingConfig, args)
    assert (loop.backend, loop.overlap) == ("vllm", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("execution:\n  timeout: 3\n", "unknown setting(s) timeout"),
        ("execution:\n  workers: many\n", "workers must be int"),
        ("execution:\n  workers: 0\n", "workers must be at least 1"),
        (
            "execution:\n  sandbox: docker-ish\n",
            "sandbox must be one of auto, docker, bwrap, process",
        ),
        ("executon:\n  workers: 1\n", "unknown section 'executon'"),
        ("execution: [1, 2]\n", "section 'execution' must be a mapping"),
        ("execution:\n  workers: [1\n", "malformed YAML"),
        ("- 1\n", "must be a mapping of sections"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError, match=r"bad\.yaml") as info:
        config_from_sources(ExecutionConfig, _args("--config", str(cfg)))
    assert message in str(info.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("execution:\n  workers: 1\n  timeout_s: [3\n")
    with pytest.raises(InputError, match=r"bad.yaml:\d+: malformed YAML"):
        load_config_file(cfg)


@pytest.mark.parametrize("item", ["timeout_s=3", "execution.=3", "execution.timeout_s", "x.y=1"])
def test_bad_overrides(item: str) -> None:
    with pytest.raises(InputError, match="override"):
        parse_overrides([item])


def test_numbers_are_read_as_text_where_a_setting_is_text() -> None:
    from codealign.settings.loop import IterateConfig

    config = build_config(IterateConfig, {"eval_k": 1, "train_tasks": "x.jsonl"})
    assert config.eval_k == "1" and config.ks() == [1]
    with pytest.raises(InputError, match="eval_k must be a string"):
        build_config(IterateConfig, {"eval_k": True})
    with pytest.raises(InputError, match="eval_k must be comma-separated integers"):
        build_config(IterateConfig, {"eval_k": "1,x"})


def test_flags_are_bound_to_their_section() -> None:
    """Two sections with a field of the same name each get their own value."""
    from codealign.settings.ppo import PPOConfig
    from codealign.settings.preference import PreferenceConfig

    parser = argparse.ArgumentParser()
    add_config_arguments(parser.add_argument_group("train"), PreferenceConfig)
    add_config_arguments(parser, PPOConfig, {"lr": "ppo-lr"}, only=("lr",))
    parser.add_argument("--set", dest="overrides", action="append")
    args = parser.parse_args(["--lr", "0.5", "--set", "ppo.seed=3"])
    assert vars(args)["train.lr"] == "0.5" and vars(args)["ppo.lr"] is None
    train, ppo = config_from_sources(PreferenceConfig, args), config_from_sources(PPOConfig, args)
    assert (train.lr, train.seed) == (0.5, 0)
    assert (ppo.lr, ppo.seed) == (PPOConfig().lr, 3)


def test_the_method_is_owned_by_the_loop_section(tmp_path: Path) -> None:
    from codealign.settings.loop import IterateConfig
    from codealign.settings.preference import PreferenceConfig

    assert "method" in {f.name for f in fields(IterateConfig)}
    assert "method" not in {f.name for f in fields(PreferenceConfig)}
    cfg = tmp_path / "old.yaml"
    cfg.write_text("train:\n  method: ppo\n")
    with pytest.raises(InputError, match=r"old\.yaml: train: train\.method is now iterate\.method"):
        load_config_file(cfg)
    with pytest.raises(InputError, match=r"train\.method is now iterate\.method"):
        parse_overrides(["train.method=kto"])
    with pytest.raises(InputError, match="iterate: method must be one of dpo, ipo"):
        build_config(IterateConfig, {"method": "sft"}, source="iterate")


def test_settings_are_the_floor() -> None:
    """Loading every settings module and making every section's defaults (a run's config,
    ``IterateConfig()`` included) loads nothing of codealign above the settings: no
    torch, no transformers, no evaluation, execution or training code."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, codealign.settings as s\n"
        "for m in pkgutil.iter_modules(s.__path__):\n"
        "    importlib.import_module('codealign.settings.' + m.name)\n"
        "from codealign.settings.sources import SECTIONS\n"
        "for cls in SECTIONS.values():\n"
        "    cls()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('codealign', 'torch', 'transformers') and not m.startswith('codealign.settings'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "codealign,codealign.errors"


def test_backend_auto_is_vllm_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    found = {"vllm": None}
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: found.get(n, real(n, *a)))
    assert SamplingConfig(backend="auto").backend == "hf"
    found["vllm"] = object()  # type: ignore[assignment]
    assert SamplingConfig(backend="auto").backend == "vllm"
    # An NF4 sampling base is transformers' only: auto does not pick vLLM for it.
    assert SamplingConfig(backend="auto", base_dtype="policy").backend == "hf"
