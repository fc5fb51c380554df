"""Bad answers on demand, deterministically: which requests a mock provider answers badly,
and how.

The draw is a hash of the request's messages and the provider's name (the host of its URL,
`mock://fast` → "fast"), not of the model: the same conversation always gets the same
flaw from the same mock provider (a demo is reproducible, a retry does not fix it), while
another mock provider answers it cleanly or differently (a cascade to it recovers).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from tier_router.providers.mock.choice import Choice
from tier_router.providers.mock.options import Flaw, MockOptions

REFUSAL = "I'm sorry, but I can't help with that."
PREFACE = "Sure! Here is the JSON you asked for:\n\n"
WRONG_VALUES: tuple[Any, ...] = (12345, "mock", True, [], {})
"""Tried in order for a property of the wrong type: the first whose JSON type the
property's schema does not name."""
JSON_TYPES: dict[type, str] = {
    int: "integer",
    float: "number",
    str: "string",
    bool: "boolean",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True, slots=True)
class Draw:
    """The fate of one request on one mock provider."""

    flaw: Flaw | None
    style: int = 0
    """Picks between a flaw's variants (cut vs preface, missing vs wrong type)."""


def draw(messages: Any, server: str, options: MockOptions, applicable: frozenset[Flaw]) -> Draw:
    """Flawed when the hash's first 64 bits, as a share, fall below `flaw_rate`; the flaw is
    one of the configured ones that can apply to this answer (json only when JSON was asked,
    tools only for a tool call), picked by the hash too. None when none can."""
    if options.flaw_rate <= 0:
        return Draw(None)
    key = json.dumps(messages, sort_keys=True, separators=(",", ":"), default=str)  # ASCII: no surrogates
    digest = hashlib.blake2b(
        key.encode() + b"\0" + server.encode(), digest_size=16, person=b"mock-flaw"
    ).digest()
    if int.from_bytes(digest[:8]) / 2**64 >= options.flaw_rate:
        return Draw(None)
    candidates = [f for f in Flaw if f in options.flaws and f in applicable]
    if not candidates:
        return Draw(None)
    return Draw(candidates[digest[8] % len(candidates)], digest[9])


def spoil(choice: Choice, draw: Draw, parameters: Any) -> Choice:
    """`choice` with `draw`'s flaw; `parameters`: the called tool's schema, when a tool call."""
    if draw.flaw is Flaw.REFUSAL:
        return Choice(REFUSAL)
    if draw.flaw is Flaw.TRUNCATE:
        return choice.cut(max(0, choice.tokens() // 2))
    if draw.flaw is Flaw.JSON and choice.content is not None:
        return replace(choice, content=bad_json(choice.content, draw.style))
    if draw.flaw is Flaw.TOOLS and choice.call is not None:
        arguments = bad_arguments(choice.call.arguments, parameters, draw.style)
        return replace(choice, call=replace(choice.call, arguments=arguments))
    return choice


def bad_json(text: str, style: int) -> str:
    """The object cut in half (any proper prefix of an object or array is invalid JSON), or
    — for other values, and every other request — a prose preface."""
    if style % 2 == 0 and text[:1] in ("{", "[") and len(text) > 1:
        return text[: len(text) // 2]
    return PREFACE + text


def bad_arguments(arguments: str, parameters: Any, style: int) -> str:
    """A required property dropped (even styles), or a property given a value of a type its
    schema does not allow (odd styles, or no required property); `[]` when neither is
    possible (no property to spoil)."""
    try:
        values = json.loads(arguments)
    except ValueError:
        return arguments  # already bad (cut by max_tokens)
    if not isinstance(values, dict) or not values:
        return "[]"
    schema = parameters if isinstance(parameters, dict) else {}
    required = [n for n in schema.get("required") or () if isinstance(n, str) and n in values]
    if required and style % 2 == 0:
        del values[required[0]]
        return json.dumps(values)
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    for name in [*required, *values]:
        allowed = allowed_types(properties.get(name))
        wrong = [v for v in WRONG_VALUES if JSON_TYPES[type(v)] not in allowed]
        if allowed and wrong:
            values[name] = wrong[0]
            return json.dumps(values)
    if required:
        del values[required[0]]
        return json.dumps(values)
    return "[]"


def allowed_types(schema: Any) -> set[str]:
    """The JSON types a property's schema names, directly, in `anyOf`/`oneOf` branches or
    by its `enum`/`const` values (integer and number count as one); empty: any type."""
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type")
    named = (
        {declared} if isinstance(declared, str) else set(declared) if isinstance(declared, list) else set()
    )
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        for branch in branches if isinstance(branches, list) else ():
            named |= allowed_types(branch)
    members = schema.get("enum") if isinstance(schema.get("enum"), list) else []
    for value in [*members, schema["const"]] if "const" in schema else members:
        named.add(JSON_TYPES.get(type(value), "null"))
    if named & {"integer", "number"}:
        named |= {"integer", "number"}
    return {str(t) for t in named}
