"""Checking a dataclass's fields read from JSON, so a wrong type names the file and the field."""

from __future__ import annotations

import dataclasses
from typing import Any

from structgs.utils.errors import InputError


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "a boolean"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, dict):
        return "an object"
    if isinstance(default, tuple):
        element = _kind(default[0]) if default else "a string"
        return f"a list of {element.split(' ', 1)[1]}s"
    return "any value"


def _fits(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, tuple):
        element = default[0] if default else ""
        return isinstance(value, (list, tuple)) and all(_fits(v, element) for v in value)
    return True


def check_fields(cls, values: dict[str, Any], where: str) -> None:
    """Raise ValueError naming ``where`` (e.g. "run/config.json: decoder") and the field when
    ``values`` has a field ``cls`` lacks or a value of another JSON type than the field's default."""
    if not isinstance(values, dict):
        raise InputError(f"{where} must be an object, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise InputError(f"{where} has unknown fields {unknown} (written by a newer structgs?)")
    for name, value in values.items():
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if default is not None and not _fits(value, default):
            raise InputError(f"{where}.{name} must be {_kind(default)}, got {value!r}")
