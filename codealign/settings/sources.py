"""Loading and merging settings: YAML sections, ``section.key=value`` overrides, flags.

The settings themselves are light dataclasses in ``codealign.settings``, one per section,
whose fields carry their help text in ``metadata["help"]``; the CLI derives its flags from
those fields, so a setting is documented once. A flag is bound to its section (its
argparse destination is ``section.field``), so two sections may share a field name.
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
from codealign.settings.execution import ExecutionConfig
from codealign.settings.loop import IterateConfig
from codealign.settings.model import ModelConfig, SamplingConfig
from codealign.settings.ppo import PPOConfig
from codealign.settings.preference import PreferenceConfig
from codealign.settings.reward_model import RewardModelConfig
from codealign.settings.scoring import ScoringConfig
from codealign.settings.tracking import TrackingConfig

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
    "tracking": TrackingConfig,
}

#: Settings that moved to another section, and where they live now.
MOVED = {"train.method": "iterate.method"}


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
    # A YAML list for a comma-separated setting (report_to, eval_k, lint_rules, ...).
    scalars = (
        isinstance(value, list)
        and value
        and all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
    )
    if annotation is str and scalars:
        return ",".join(str(v) for v in value)
    if annotation is str and not isinstance(value, str):
        raise InputError(f"{where} must be a string, got {value!r}")
    return value


def build_config(cls: type[C], values: Mapping[str, Any], *, source: str = "config") -> C:
    """Instantiate dataclass ``cls`` from ``values``; unknown keys and bad types are errors."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    section = next((name for name, c in SECTIONS.items() if c is cls), None)
    for key in values:
        if f"{section}.{key}" in MOVED:
            raise InputError(f"{source}: {section}.{key} is now {MOVED[f'{section}.{key}']}")
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
        if key in MOVED:
            raise InputError(f"override {item!r}: {key} is now {MOVED[key]}")
        out.setdefault(section, {})[name] = yaml.safe_load(raw) if raw else ""
    return out


def flag_dest(section: str, name: str) -> str:
    """The argparse destination of a section's field: bound to its section."""
    return f"{section}.{name}"


def section_of(cls: type[Any]) -> str:
    """The config-file section a settings dataclass fills."""
    for name, section_cls in SECTIONS.items():
        if section_cls is cls:
            return name
    raise TypeError(f"{cls.__name__} is not a config section")


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type[Any],
    rename: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
) -> None:
    """One ``--flag`` per field of the section ``cls`` fills, with the field's help; defaults
    stay unset, so a flag given overrides the config file and an absent one does not.

    ``rename`` gives a field another flag name (``model.name`` is ``--model``); ``only``
    keeps some fields (a command that needs few of a section's settings).
    """
    section = section_of(cls)
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        flag = "--" + (rename or {}).get(f.name, f.name).replace("_", "-")
        dest = flag_dest(section, f.name)
        help_text = f.metadata.get("help", "")
        if hints[f.name] is bool:
            # A setting that is on by default is turned off by its --no- flag.
            on = f.default is True
            parser.add_argument(
                "--no-" + flag[2:] if on else flag,
                dest=dest,
                action="store_false" if on else "store_true",
                default=None,
                help=help_text,
            )
            continue
        literal = typing.get_origin(hints[f.name]) is typing.Literal
        choices = typing.get_args(hints[f.name]) if literal else None
        parser.add_argument(
            flag,
            dest=dest,
            default=None,
            choices=choices,
            metavar=None if choices else f.name.upper(),
            help=help_text,
        )


def config_from_sources(cls: type[C], args: argparse.Namespace) -> C:
    """One section's settings: defaults < ``--config`` file < ``--set`` overrides < flags."""
    section = section_of(cls)
    values: dict[str, Any] = {}
    source = section
    if getattr(args, "config", None):
        values.update(load_config_file(args.config).get(section, {}))
        source = f"{args.config}: {section}"
    values.update(parse_overrides(getattr(args, "overrides", None) or []).get(section, {}))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        flag_value = getattr(args, flag_dest(section, f.name), None)
        if flag_value is not None:
            values[f.name] = flag_value
    return build_config(cls, values, source=source)
