"""Typed dataclass configs: YAML sections, ``key=value`` overrides and CLI flags.

Every config is a dataclass whose fields carry their help text in ``metadata["help"]``;
the CLI derives its flags from those fields, so a setting is documented once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from codealign.errors import InputError
from codealign.execution.config import ExecutionConfig
from codealign.iterate import IterateConfig
from codealign.models.config import ModelConfig, SamplingConfig
from codealign.scoring.combine import ScoringConfig
from codealign.training.dpo import PreferenceConfig
from codealign.training.ppo import PPOConfig
from codealign.training.reward_model import RewardModelConfig

C = TypeVar("C")

#: The sections a config file may have, and the dataclass each one fills.
SECTIONS: dict[str, type[Any]] = {
    "execution": ExecutionConfig,
    "model": ModelConfig,
    "sampling": SamplingConfig,
    "reward_model": RewardModelConfig,
    "scoring": ScoringConfig,
    "train": PreferenceConfig,
    "ppo": PPOConfig,
    "iterate": IterateConfig,
}


def _field_types(cls: type[Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check (and for strings from the command line, convert) one value."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(map(str, typing.get_args(annotation)))
            raise InputError(f"{where} must be one of {choices}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation in (int, float):
        if isinstance(value, bool):
            raise InputError(f"{where} must be a number, got {value!r}")
        if isinstance(value, str):
            try:
                return annotation(value)
            except ValueError:
                raise InputError(f"{where} must be {annotation.__name__}, got {value!r}") from None
        if annotation is int and not isinstance(value, int):
            raise InputError(f"{where} must be an integer, got {value!r}")
        if not isinstance(value, int | float):
            raise InputError(f"{where} must be a number, got {value!r}")
        return annotation(value)
    if origin in (tuple, list):  # a list of strings: from YAML, or JSON on the command line
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise InputError(f"{where} must be a JSON list of strings, got {value!r}") from None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise InputError(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)
    if annotation is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # YAML reads `eval_k: 1` or `name: 7` as a number
    if annotation is str and not isinstance(value, str):
        raise InputError(f"{where} must be a string, got {value!r}")
    return value


def build_config(cls: type[C], values: Mapping[str, Any], *, source: str = "config") -> C:
    """Instantiate dataclass ``cls`` from ``values``; unknown keys and bad types are errors."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{source}: {k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping of sections."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError("no such config file", path=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(
            f"malformed YAML: {getattr(exc, 'problem', exc)}", path=path, line=line
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("a config file must be a mapping of sections", path=path)
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Load a config file and check every section against its dataclass."""
    data = load_yaml(path)
    for section, values in data.items():
        if section not in SECTIONS:
            raise InputError(
                f"unknown section {section!r}; known: {', '.join(SECTIONS)}", path=path
            )
        if not isinstance(values, dict):
            raise InputError(f"section {section!r} must be a mapping", path=path)
        build_config(SECTIONS[section], values, source=f"{path}: {section}")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` strings into nested mappings; values are parsed as YAML scalars."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not section or not name:
            raise InputError(f"override {item!r} must look like section.key=value")
        if section not in SECTIONS:
            raise InputError(
                f"override {item!r}: unknown section {section!r}; known: {', '.join(SECTIONS)}"
            )
        out.setdefault(section, {})[name] = yaml.safe_load(raw) if raw else ""
    return out


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[Any],
    rename: dict[str, str] | None = None,
) -> None:
    """One ``--flag`` per field of ``cls``, with the field's help; defaults stay unset.

    ``rename`` gives a field another flag name (``model.name`` is ``--model``).
    """
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + (rename or {}).get(f.name, f.name).replace("_", "-")
        help_text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            parser.add_argument(
                flag, dest=f.name, action="store_true", default=None, help=help_text
            )
        else:
            choices = (
                typing.get_args(hints[f.name])
                if typing.get_origin(hints[f.name]) is typing.Literal
                else None
            )
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                choices=choices,
                metavar=None if choices else f.name.upper(),
                help=help_text,
            )


def config_from_sources(cls: type[C], section: str, args: argparse.Namespace) -> C:
    """Defaults < ``--config`` file section < ``--set`` overrides < explicit flags."""
    values: dict[str, Any] = {}
    source = section
    if getattr(args, "config", None):
        values.update(load_config_file(args.config).get(section, {}))
        source = f"{args.config}: {section}"
    values.update(parse_overrides(getattr(args, "overrides", None) or []).get(section, {}))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag_value = getattr(args, f.name, None)
        if flag_value is not None:
            values[f.name] = flag_value
    return build_config(cls, values, source=source)
