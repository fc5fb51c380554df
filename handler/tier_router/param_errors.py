"""OpenAI's wording for a refused parameter (`tier_router.params`): each builder returns the
400 `invalid_request_error` OpenAI answers, naming the parameter and its code. Built only on
failure; a rejected string value is echoed up to SHOWN_CHARS characters."""

from __future__ import annotations

from typing import Any, Final

from tier_router.errors import APIError

KINDS: Final[dict[type, str]] = {bool: "a boolean", int: "an integer", float: "a decimal number"}
KINDS.update({str: "a string", list: "an array", dict: "an object"})
SHOWN_CHARS: Final = 64
"""A rejected string value is echoed in the message up to this many characters."""


def kind_of(value: Any) -> str:
    return "null" if value is None else KINDS.get(value.__class__, "an unsupported value")


def shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def listed(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return " and ".join(quoted) if len(quoted) <= 2 else ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def bad_request(message: str, param: str, code: str) -> APIError:
    return APIError(400, message, type="invalid_request_error", code=code, param=param)


def invalid_type(param: str, expected: str, value: Any) -> APIError:
    message = f"Invalid type for '{param}': expected {expected}, but got {kind_of(value)} instead."
    return bad_request(message, param, "invalid_type")


def missing(param: str) -> APIError:
    return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def wrong(param: str, expected: str, value: Any) -> APIError:
    """Absent (or null) where required, else of the wrong type."""
    return missing(param) if value is None else invalid_type(param, expected, value)


def invalid_value(param: str, value: Any, supported: tuple[str, ...]) -> APIError:
    message = f"Invalid value: '{shown(value)}'. Supported values are: {listed(supported)}."
    return bad_request(message, param, "invalid_value")


def enum(param: str, value: Any, supported: tuple[str, ...]) -> APIError:
    """A value that must be one of `supported`: missing, of the wrong type, or unknown."""
    if value.__class__ is str:
        return invalid_value(param, value, supported)
    return wrong(param, "a string", value)


def out_of_range(param: str, number: str, value: float, bound: float, above: bool) -> APIError:
    """`number`: the parameter's type, "integer" or "decimal" (whatever the value's)."""
    side, limit, sign = ("above", "maximum", "<=") if above else ("below", "minimum", ">=")
    edge = int(bound) if bound == int(bound) else bound
    message = (
        f"Invalid '{param}': {number} {side} {limit} value. Expected a value {sign} {edge}, "
        f"but got {shown(value)} instead."
    )
    return bad_request(message, param, f"{number}_{side}_{limit[:3]}_value")


def length(param: str, what: str, limit: int, size: int) -> APIError:
    """An array (`what` "array") or a string ("string") longer than `limit`, or empty (`size` 0)
    where `limit` is the minimum."""
    a = "an" if what == "array" else "a"
    if size == 0:
        message = f"Invalid '{param}': empty {what}. Expected {a} {what} with minimum length {limit}, "
        return bad_request(message + f"but got an empty {what} instead.", param, f"empty_{what}")
    message = f"Invalid '{param}': {what} too long. Expected {a} {what} with maximum length {limit}, "
    return bad_request(
        message + f"but got {a} {what} with length {size} instead.", param, f"{what}_above_max_length"
    )
