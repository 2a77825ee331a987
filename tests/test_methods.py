"""The method table: one ``MethodSpec`` per training method, read everywhere a method's
nature matters; names register once."""

from __future__ import annotations

import typing

import pytest

from codealign.settings.execution import ExecutionConfig
from codealign.settings.loop import IterateConfig, RunConfig
from codealign.settings.methods import (
    METHODS,
    PREFERENCE_METHODS,
    RL_METHODS,
    Method,
    MethodSpec,
    method_spec,
    register,
)
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.scoring import ScoringConfig


def test_the_table_names_every_method_once() -> None:
    assert set(typing.get_args(Method)) == set(METHODS)
    assert PREFERENCE_METHODS == ("dpo", "ipo", "kto", "orpo")
    assert RL_METHODS == ("ppo", "grpo", "rloo")
    with pytest.raises(ValueError, match="'dpo' is already registered"):
        register(MethodSpec("dpo", "preference", "pairs", "another paper"))
    assert METHODS["dpo"].paper.startswith("Rafailov")  # the first one stays
    with pytest.raises(ValueError, match="unknown training method 'sft'; known: dpo, ipo"):
        method_spec("sft")


def test_a_spec_must_be_coherent() -> None:
    with pytest.raises(ValueError, match="train on rollouts"):
        register(MethodSpec("bad-rl", "rl", "pairs", "x", estimator="gae", kl_penalty="loss"))
    with pytest.raises(ValueError, match="estimator and KL placement"):
        register(MethodSpec("bad-rl", "rl", "rollouts", "x"))
    assert "bad-rl" not in METHODS


def test_what_each_method_is() -> None:
    # family, records, reference, critic, estimator, KL: the facts the code reads.
    rows = {
        name: (s.family, s.records, s.uses_reference, s.critic, s.estimator, s.kl_penalty)
        for name, s in METHODS.items()
    }
    assert rows == {
        "dpo": ("preference", "pairs", True, False, None, None),
        "ipo": ("preference", "pairs", True, False, None, None),
        "kto": ("preference", "labelled", True, False, None, None),
        "orpo": ("preference", "pairs", False, False, None, None),
        "ppo": ("rl", "rollouts", True, True, "gae", "reward"),
        "grpo": ("rl", "rollouts", True, False, "grpo", "loss"),
        "rloo": ("rl", "rollouts", True, False, "rloo", "reward"),
    }


def test_the_settings_read_the_table() -> None:
    assert PPOConfig().penalty_place("grpo") == "loss"
    assert PPOConfig().penalty_place("ppo") == "reward"
    assert PPOConfig(kl_penalty="loss").penalty_place("ppo") == "loss"
    for method, rl in (("orpo", False), ("kto", False), ("grpo", True), ("ppo", True)):
        config = RunConfig(
            IterateConfig(method=method),  # type: ignore[arg-type]
            PreferenceConfig(),
            ModelConfig(),
            SamplingConfig(),
            ExecutionConfig(),
            ScoringConfig(),
        )
        assert config.rl is rl
