"""The training methods and which recipe trains each: chosen once, by ``iterate.method``."""

from __future__ import annotations

from typing import Literal

Method = Literal["dpo", "ipo", "kto", "orpo", "ppo", "grpo", "rloo"]
#: Offline preference losses on pairs (KTO: labelled samples): the ``train`` section.
PREFERENCE_METHODS: tuple[str, ...] = ("dpo", "ipo", "kto", "orpo")
#: Online RL on scored rollouts: the ``ppo`` section.
RL_METHODS: tuple[str, ...] = ("ppo", "grpo", "rloo")
