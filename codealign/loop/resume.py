"""A run's settings, recorded when it starts: a resumed run must keep the ones that shape
its results (more rounds, more workers or another device may change)."""

from __future__ import annotations

import json
from typing import Any

from codealign.errors import InputError
from codealign.jsonl import write_json
from codealign.loop.layout import RunLayout
from codealign.settings.execution import ExecutionConfig
from codealign.settings.loop import IterateConfig, RunConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.scoring import ScoringConfig

#: Settings a resumed run may change: they do not change what a round computes.
FREE = {
    "iterate": ("rounds", "eval_every"),
    "execution": ("workers", "sandbox", "cluster", "ray_address"),
    "model": ("device",),
    # The engine and its resources: the same policy and sampling settings on another.
    "sampling": ("backend", "overlap", "tensor_parallel_size", "gpu_memory_utilization"),
}


def _as_json(config: RunConfig) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(config.as_dict()))  # as run.json stores it
    return loaded


def settings_that_matter(config: RunConfig) -> dict[str, Any]:
    """What must not change when a run resumes: every section but the free settings, and
    only the settings section of the method's own recipe."""
    d = _as_json(config)
    for section, keys in FREE.items():
        for key in keys:
            d[section].pop(key)
    d.pop("train" if config.rl else "ppo")
    return d


def _stored_settings(layout: RunLayout) -> dict[str, Any]:
    path = layout.settings
    try:
        stored: dict[str, Any] = json.loads(path.read_text("utf-8"))["settings"]
    except (ValueError, KeyError) as exc:
        raise InputError(f"not a codealign run file ({exc})", path=path) from None
    if "method" in stored.get("train", {}):  # runs from before iterate.method owned it
        stored.setdefault("iterate", {})["method"] = stored.pop("train")["method"]
    return stored


def check_run_dir(layout: RunLayout, config: RunConfig) -> None:
    """Record the settings of a new run; refuse to resume one made with other settings."""
    wanted = settings_that_matter(config)
    if not layout.settings.exists():
        layout.dir.mkdir(parents=True, exist_ok=True)
        write_json(layout.settings, {"settings": wanted, "config": config.as_dict()})
        return
    stored = _stored_settings(layout)
    # A setting newer than the run (an upgrade added it) counts as its default.
    defaults = _as_json(
        RunConfig(
            IterateConfig(),
            PreferenceConfig(),
            ModelConfig(),
            SamplingConfig(),
            ExecutionConfig(),
            ScoringConfig(),
        )
    )
    changed = [
        f"{section}.{key}"
        for section in wanted
        for key in wanted[section]
        if stored.get(section, {}).get(key, defaults[section][key]) != wanted[section][key]
    ]
    if changed:
        raise InputError(
            f"this run was started with other settings ({', '.join(changed)}); resume "
            "it with the same config, or give another --run-dir",
            path=layout.settings,
        )
