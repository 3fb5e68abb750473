"""Dagster Config classes derived from core's settings dataclasses.

Each choice (its type, Literal options, default and help) is declared once, on a dataclass in
core; the Config class shown in the launchpad is built from it, and `to_settings()` turns a
config back into that dataclass. Nested dataclasses (a model's shape) become flat fields, as a
person types them.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
from collections.abc import Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import dagster as dg
import pydantic

_SOURCES: dict[type, type] = {}  # Config class -> the settings dataclass it mirrors


class SettingsConfig(dg.Config):
    """A Config whose fields mirror a core settings dataclass (see `settings_config`)."""

    def to_settings(self):
        return _rebuild(_SOURCES[type(self)](), self.model_dump())


def _config_type(tp):
    """The type Dagster config accepts for a dataclass field type."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _config_type(args[0]) | None
    if origin in (collections.abc.Sequence, tuple, list):
        (item, *_) = get_args(tp)
        # Dagster config has no list of Literal: such lists are plain strings, and core's
        # validation rejects unknown names before any compute.
        return list[str] if get_origin(item) is Literal else list[item]
    return tp


def _leaves(settings_type, instance) -> list[tuple[str, Any, Any, str | None]]:
    """(name, type, default, help) for every leaf field, nested dataclasses flattened."""
    hints = get_type_hints(settings_type)
    out = []
    for f in dataclasses.fields(settings_type):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out += _leaves(hints[f.name], value)
        else:
            default = list(value) if isinstance(value, tuple) else value
            out.append((f.name, _config_type(hints[f.name]), default, f.metadata.get("help")))
    return out


def _rebuild(instance, values: dict):
    """A copy of `instance` with the leaf fields named in `values` replaced."""
    changes = {}
    for f in dataclasses.fields(instance):
        current = getattr(instance, f.name)
        if dataclasses.is_dataclass(current):
            changes[f.name] = _rebuild(current, values)
        elif f.name in values:
            value = values[f.name]
            changes[f.name] = tuple(value) if isinstance(current, tuple) else value
    return dataclasses.replace(instance, **changes)


def settings_config(
    name: str,
    settings_type: type,
    doc: str,
    *,
    only: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    extra: dict[str, tuple[Any, Any, str]] | None = None,
) -> type[SettingsConfig]:
    """A Config class with one field per leaf of `settings_type` (or those in `only`, minus
    `exclude`), defaults and help from the dataclass, plus `extra` fields
    {name: (type, default, help)} that are not settings (e.g. which trainer or labeller)."""
    fields: dict[str, Any] = {
        key: (tp, pydantic.Field(default=default, description=help_text))
        for key, (tp, default, help_text) in (extra or {}).items()
    }
    for leaf, tp, default, help_text in _leaves(settings_type, settings_type()):
        if (only is None or leaf in only) and leaf not in exclude:
            fields[leaf] = (tp, pydantic.Field(default=default, description=help_text))
    config = pydantic.create_model(name, __base__=SettingsConfig, __module__=__name__, **fields)
    config.__doc__ = doc
    _SOURCES[config] = settings_type
    return config
