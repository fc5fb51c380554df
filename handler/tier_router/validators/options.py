"""Strict reading of a validator's rules-file options: unknown keys and wrong types are
errors (a `ValueError` whose message the registry prefixes with the entry, e.g.
"on[2].refusal: unknown option 'paterns' (known: extra_patterns, patterns, within)")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def mapping(kind: str, options: Any, known: tuple[str, ...]) -> dict[str, Any]:
    """`options` as a mapping with only `known` keys (None or a bare entry: empty)."""
    if options is None or options is True:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"{kind} takes a mapping of options ({', '.join(known)}), not {type_name(options)}")
    for key in options:
        if key not in known:
            raise ValueError(f"unknown option {key!r} (known: {', '.join(sorted(known))})")
    return dict(options)


def integer(value: Any, name: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {type_name(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValueError(f"{name} must be {bound} (got {value})")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {type_name(value)}")
    return value


def string(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, not {type_name(value)}")
    return value


def strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of strings, not {type_name(value)}")
    return tuple(string(item, f"{name}[{i}]") for i, item in enumerate(value))


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(type(value), type(value).__name__)
