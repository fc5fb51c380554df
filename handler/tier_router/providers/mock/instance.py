"""A small JSON value that conforms to a JSON schema: what the mock answers for
`response_format: json_schema` and for a tool's `parameters`.

Covered: `type` (one or a list: the first non-null one), `const` and `enum` (first), objects
(the required properties, every property when `strict`, more declared ones up to
`minProperties`), arrays (`minItems` items, one when the schema allows any number near the
top; `prefixItems` and tuple `items`), strings (`minLength`/`maxLength`, a few `format`s),
integers and numbers (`minimum`/`maximum`, both `exclusive*` forms, `multipleOf`), booleans,
null, `anyOf`/`oneOf` (the first non-null branch), `allOf` (merged), `$ref` into `$defs` /
`definitions` (any local JSON pointer). Nesting is bounded (`MAX_DEPTH`): past it, the
cheapest value of the type; so is the work per schema (`BUDGET`, the schema comes from the
client). Anything else (`pattern`, `not`, `if`, remote refs, a schema
that is not an object) is ignored or answered with a plain value: never an exception.

`variant` makes the n choices of one answer differ (enum members, numbers, string suffixes)
where the schema leaves room.
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 6
BUDGET = 5000
"""Schema steps (values built, refs followed, branches merged) per instance; once spent,
every further value is the cheapest of its type."""
"""Objects/arrays/refs nested deeper than this get the cheapest value of their type."""
ROOMY_DEPTH = 2
"""Arrays with no `minItems` get one item above this depth, none below (keeps trees small)."""

TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "mock@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}
CHEAPEST: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False, "null": None}
OBJECT_HINTS = ("properties", "required", "additionalProperties", "minProperties")
ARRAY_HINTS = ("items", "prefixItems", "minItems", "maxItems")
STRING_HINTS = ("minLength", "maxLength", "pattern", "format")
NUMBER_HINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def instance(schema: Any, *, strict: bool = False, variant: int = 0) -> Any:
    """A value conforming to `schema` (as far as the covered keywords go)."""
    return _Builder(schema, strict).value(schema, 0, variant, "")


class _Builder:
    __slots__ = ("budget", "root", "strict")

    def __init__(self, root: Any, strict: bool) -> None:
        self.root = root
        self.strict = strict
        self.budget = BUDGET

    def value(self, schema: Any, depth: int, variant: int, hint: str) -> Any:
        if schema is False:
            return None  # nothing conforms
        if not isinstance(schema, dict):
            return _text(hint, variant, {})
        schema = self.flatten(schema, depth)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[variant % len(enum)]
        kind = type_of(schema)
        self.budget -= 1
        if depth > MAX_DEPTH or self.budget <= 0:
            return {} if kind == "object" else [] if kind == "array" else CHEAPEST.get(kind)
        if kind == "object":
            return self.object(schema, depth, variant)
        if kind == "array":
            return self.array(schema, depth, variant)
        if kind in ("integer", "number"):
            return number(schema, kind == "integer", variant)
        if kind == "boolean":
            return variant % 2 == 0
        if kind == "null":
            return None
        return _text(hint, variant, schema)

    def flatten(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        """`$ref`, `allOf` and `anyOf`/`oneOf` folded into one plain schema."""
        for _ in range(MAX_DEPTH):  # a chain of refs to refs ends somewhere
            self.budget -= 1
            if depth > 2 * MAX_DEPTH or self.budget <= 0:  # e.g. an allOf of a ref back to itself
                return schema
            ref = schema.get("$ref")
            if isinstance(ref, str):
                target = self.resolve(ref)
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **rest} if isinstance(target, dict) else rest
                continue
            parts = schema.get("allOf")
            if isinstance(parts, list) and parts:
                merged = {k: v for k, v in schema.items() if k != "allOf"}
                for part in parts:
                    if isinstance(part, dict):
                        merged = _merge(merged, self.flatten(part, depth + 1))
                schema = merged
                continue
            for key in ("anyOf", "oneOf"):
                branches = schema.get(key)
                if isinstance(branches, list) and branches:
                    rest = {k: v for k, v in schema.items() if k != key}
                    schema = {**rest, **_first_branch(branches)}
                    break
            else:
                return schema
        return schema

    def resolve(self, ref: str) -> Any:
        """A local JSON pointer (`#`, `#/$defs/Node`, `#/definitions/a~1b`); None otherwise."""
        if not ref.startswith("#"):
            return None
        target = self.root
        for token in ref[1:].lstrip("/").split("/") if ref != "#" else ():
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                return None
        return target

    def object(self, schema: dict[str, Any], depth: int, variant: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        names = [n for n in required if isinstance(n, str)] if isinstance(required, list) else []
        if self.strict:
            names += properties
        wanted = _int(schema, "minProperties") or 0
        names += list(properties)[: max(0, wanted - len(set(names)))]
        if len(set(names)) < wanted:
            names += [f"extra_{i}" for i in range(wanted - len(set(names)))]
        extra = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            sub = properties.get(name, extra if isinstance(extra, dict) else {})
            out[name] = self.value(sub, depth + 1, variant, name)
        return out

    def array(self, schema: dict[str, Any], depth: int, variant: int) -> list[Any]:
        low = _int(schema, "minItems") or 0
        high = _int(schema, "maxItems")
        count = low or (1 if depth <= ROOMY_DEPTH else 0)
        if high is not None:
            count = min(count, max(high, low))
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # the old tuple form
            prefix, items = items, schema.get("additionalItems")
        prefix = prefix if isinstance(prefix, list) else []
        out = []
        for i in range(count):
            if self.budget <= 0:
                break
            sub = prefix[i] if i < len(prefix) else items if isinstance(items, dict) else {}
            out.append(self.value(sub, depth + 1, variant + i, "item"))
        return out


def type_of(schema: dict[str, Any]) -> str:
    """The schema's type: the declared one (the first non-null of a list), else inferred
    from its keywords; "string" when nothing says."""
    declared = schema.get("type")
    if isinstance(declared, list):
        known = [t for t in declared if t in TYPES]
        declared = next((t for t in known if t != "null"), known[0] if known else None)
    if declared in TYPES:
        return str(declared)
    for kind, hints in (("object", OBJECT_HINTS), ("array", ARRAY_HINTS), ("number", NUMBER_HINTS)):
        if any(h in schema for h in hints):
            return kind
    return "string"


def number(schema: dict[str, Any], integer: bool, variant: int) -> int | float:
    """The first candidate that fits every bound: `variant` itself, then values next to the
    bounds (each rounded to `multipleOf` and, for integers, to whole numbers); when none fits
    (contradictory bounds), the lower bound or 0."""
    low = _bound(schema, "minimum", "exclusiveMinimum", 1)
    high = _bound(schema, "maximum", "exclusiveMaximum", -1)
    step = _num(schema, "multipleOf")
    step = step if step and step > 0 else None

    def fits(v: float) -> bool:
        if low and (v < low[0] or (low[1] and v == low[0])):
            return False
        if high and (v > high[0] or (high[1] and v == high[0])):
            return False
        return not step or abs(v / step - round(v / step)) < 1e-9

    anchors = [float(variant)]
    if low:
        anchors += [low[0] + variant, low[0] + 1 + variant, low[0] + 1]
    if high:
        anchors += [high[0] - variant, high[0] - 1 - variant, high[0] - 1]
    if low and high:
        anchors.append((low[0] + high[0]) / 2)
    for anchor in anchors:
        rounded = (
            [anchor] if not step else [math.ceil(anchor / step) * step, math.floor(anchor / step) * step]
        )
        for value in rounded:
            for candidate in (math.ceil(value), math.floor(value)) if integer else (value,):
                if fits(candidate):
                    return int(candidate) if integer or float(candidate).is_integer() else candidate
    fallback = low[0] if low else 0
    return math.ceil(fallback) if integer else fallback


def _bound(schema: dict[str, Any], key: str, exclusive: str, sign: int) -> tuple[float, bool] | None:
    """(limit, exclusive?) from both drafts' spellings, the tighter when both are given."""
    inclusive = _num(schema, key)
    flag = schema.get(exclusive)
    if isinstance(flag, bool):  # draft 4: a flag on `minimum`
        return None if inclusive is None else (inclusive, flag)
    strict = _num(schema, exclusive)
    if strict is None:
        return None if inclusive is None else (inclusive, False)
    if inclusive is None or (strict - inclusive) * sign >= 0:
        return (strict, True)
    return (inclusive, False)


def _text(hint: str, variant: int, schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    text = FORMATS.get(fmt, "") if isinstance(fmt, str) else ""
    if not text:
        text = f"mock {hint}" if hint else "mock"
        if variant:
            text += f" {variant + 1}"
    low, high = _int(schema, "minLength") or 0, _int(schema, "maxLength")
    if len(text) < low:
        text += "x" * (low - len(text))
    if high is not None and len(text) > high:
        text = text[: max(high, low)]
    return text


def _first_branch(branches: list[Any]) -> dict[str, Any]:
    usable = [b for b in branches if isinstance(b, dict)]
    for branch in usable:
        if branch.get("type") != "null":
            return branch
    return usable[0] if usable else {}


def _merge(into: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for key, value in part.items():
        if key == "properties" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]
        else:
            out.setdefault(key, value)
    return out


def _int(schema: dict[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return min(int(value), 1000)


def _num(schema: dict[str, Any], key: str) -> float | None:
    value = schema.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value
