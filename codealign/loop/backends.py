"""What the loop calls to sample and to train, passed in rather than imported: the real
ones load torch and transformers when first called; tests pass their own."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.tasks import Task


class Sampler(Protocol):
    """Yields each task's ``sampling.n`` records as soon as they are done, in any order."""

    def __call__(
        self, tasks: Sequence[Task], model: ModelConfig, sampling: SamplingConfig, progress: bool
    ) -> Iterator[list[dict[str, Any]]]: ...


class PreferenceTrainer(Protocol):
    def __call__(
        self,
        records: Sequence[dict[str, Any]],
        model_config: ModelConfig,
        config: PreferenceConfig,
        out: Path,
        *,
        method: str,
        reference: str | Path,
        progress: bool,
    ) -> dict[str, Any]: ...


class RLTrainer(Protocol):
    def __call__(
        self,
        records: Sequence[dict[str, Any]],
        model_config: ModelConfig,
        config: PPOConfig,
        out: Path,
        *,
        method: str,
        temperature: float,
        reference: str | Path,
        progress: bool,
    ) -> dict[str, Any]: ...


def _sample(
    tasks: Sequence[Task], model: ModelConfig, sampling: SamplingConfig, progress: bool
) -> Iterator[list[dict[str, Any]]]:
    from codealign.models.stream import stream_samples

    return stream_samples(tasks, model, sampling, progress=progress)


def _train_preference(
    records: Sequence[dict[str, Any]],
    model_config: ModelConfig,
    config: PreferenceConfig,
    out: Path,
    *,
    method: str,
    reference: str | Path,
    progress: bool,
) -> dict[str, Any]:
    from codealign.training.dpo import train_preference

    return train_preference(
        records, model_config, config, out, method=method, reference=reference, progress=progress
    )


def _train_rl(
    records: Sequence[dict[str, Any]],
    model_config: ModelConfig,
    config: PPOConfig,
    out: Path,
    *,
    method: str,
    temperature: float,
    reference: str | Path,
    progress: bool,
) -> dict[str, Any]:
    from codealign.training.ppo import train_ppo

    return train_ppo(
        records,
        model_config,
        config,
        out,
        method=method,
        temperature=temperature,
        reference=reference,
        progress=progress,
    )


@dataclass(frozen=True)
class Backends:
    """The sampler and the two trainers a run uses."""

    sample: Sampler = _sample
    train_preference: PreferenceTrainer = _train_preference
    train_rl: RLTrainer = _train_rl
