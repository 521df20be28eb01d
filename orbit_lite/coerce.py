"""Typed configuration from plain mappings: a (nested) mapping of YAML or ``--set`` values becomes a frozen dataclass,
each value read as its key's type where it plainly is one, and a dataclass becomes a plain mapping again."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

import yaml

from orbit_lite.errors import OrbitLiteError
from orbit_lite.limits import Switch

T = TypeVar("T")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Read a YAML or ``--set`` value as the key's type where it plainly is one ("1e-3" a number, "yes" true, a bare
    YAML on/off a switch); anything else is passed on unchanged for :func:`check_limits` to refuse with the range."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            return value
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        return value
    if hint in (int, float):
        if isinstance(value, bool):
            return value
        try:
            out = hint(value)
        except (TypeError, ValueError, OverflowError):
            return value
        if hint is int and isinstance(value, float) and value != out:
            return value
        return out
    if hint is Switch:  # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value
    return value


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "config", base: T | None = None) -> T:
    """Build dataclass ``cls`` from a (nested) mapping on top of ``base`` (default: the class defaults).

    Nested sections start from the field's own default, so ``test_sampling: {frame_cap: 500}`` keeps every other
    test-protocol default. Unknown keys are an error that lists the valid ones.
    """
    if not isinstance(values, Mapping):
        raise OrbitLiteError(f"{where}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise OrbitLiteError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(sorted(by_name))}")
    kwargs = {}
    for key, value in values.items():
        hint, here = hints[key], f"{where}.{key}"
        if is_dataclass(hint):
            sub_base = getattr(base, key) if base is not None else _field_default(by_name[key])
            kwargs[key] = from_dict(hint, value, here, sub_base)
        else:
            kwargs[key] = _coerce(value, hint, here)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except OrbitLiteError as e:
        # A class that serves several sections (SHARED_SECTION) names itself generically; say which one was written
        shared, section = getattr(cls, "SHARED_SECTION", None), where.removeprefix("config.")
        if shared and str(e).startswith(f"{shared}.") and section != "config":
            raise OrbitLiteError(f"{section}.{str(e).removeprefix(f'{shared}.')}") from None
        raise


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML/JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (YAML-parsed values) to a nested dict, returning a new dict."""
    out = _deep_copy(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise OrbitLiteError(f"override {item!r} is not key=value (e.g. data.frame_size=84)")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OrbitLiteError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return out


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: ``top`` wins."""
    out = _deep_copy(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out
