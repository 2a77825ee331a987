"""The training methods, one ``MethodSpec`` each: what a method *is*, written once and read
by the recipes, the advantage estimators, the actor-critic, the loop's stage tables and
the CLI (``iterate.method`` chooses one).

A spec says which family the method is (offline preferences or online RL), what records
it trains on, whether it needs a reference model and a critic, which advantage estimator
it uses and where its KL penalty goes by default. ``register`` refuses a name twice, as
verl's ``register_adv_est`` does, so a method cannot be redefined behind the table's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["dpo", "ipo", "kto", "orpo", "ppo", "grpo", "rloo"]
Family = Literal["preference", "rl"]
#: What a method trains on: preference pairs, labelled samples (KTO) or scored rollouts.
Records = Literal["pairs", "labelled", "rollouts"]


@dataclass(frozen=True)
class MethodSpec:
    """One training method: everything the code needs to know about it by name."""

    name: str
    family: Family
    records: Records
    #: The paper it follows (the docs' training page cites the same).
    paper: str
    #: Whether its loss needs the reference policy's log-probs (ORPO's does not).
    uses_reference: bool = True
    #: Whether it trains a value head beside the policy (PPO).
    critic: bool = False
    #: The advantage estimator it uses (RL only): a name of ``training.advantages``.
    estimator: str | None = None
    #: Where its KL penalty against the reference goes when ``ppo.kl_penalty`` is auto:
    #: subtracted from the per-token reward, or added to the loss (RL only).
    kl_penalty: Literal["reward", "loss"] | None = None

    @property
    def rl(self) -> bool:
        return self.family == "rl"


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the table; a name already there is an error, never an override."""
    if spec.name in METHODS:
        raise ValueError(f"training method {spec.name!r} is already registered")
    if (spec.family == "rl") != (spec.records == "rollouts"):
        raise ValueError(f"{spec.name}: RL methods train on rollouts, and only they do")
    if spec.rl and (spec.estimator is None or spec.kl_penalty is None):
        raise ValueError(f"{spec.name}: an RL method names its estimator and KL placement")
    METHODS[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    """The spec of ``name``; an unknown name is an error that lists the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown training method {name!r}; known: {', '.join(METHODS)}") from None


register(MethodSpec("dpo", "preference", "pairs", "Rafailov et al., 2023 (DPO)"))
register(MethodSpec("ipo", "preference", "pairs", "Azar et al., 2023 (IPO)"))
register(MethodSpec("kto", "preference", "labelled", "Ethayarajh et al., 2024 (KTO)"))
register(
    MethodSpec("orpo", "preference", "pairs", "Hong et al., 2024 (ORPO)", uses_reference=False)
)
register(
    MethodSpec(
        "ppo",
        "rl",
        "rollouts",
        "Schulman et al., 2017; Ouyang et al., 2022 (PPO with a KL penalty)",
        critic=True,
        estimator="gae",
        kl_penalty="reward",
    )
)
register(
    MethodSpec(
        "grpo", "rl", "rollouts", "Shao et al., 2024 (GRPO)", estimator="grpo", kl_penalty="loss"
    )
)
register(
    MethodSpec(
        "rloo",
        "rl",
        "rollouts",
        "Ahmadian et al., 2024 (RLOO)",
        estimator="rloo",
        kl_penalty="reward",
    )
)

#: Offline preference losses on pairs (KTO: labelled samples): the ``train`` section.
PREFERENCE_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if not s.rl)
#: Online RL on scored rollouts: the ``ppo`` section.
RL_METHODS: tuple[str, ...] = tuple(n for n, s in METHODS.items() if s.rl)
