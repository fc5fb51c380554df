"""The mock's schema instances conform to their schema (checked by `jsonschema`), and a
schema it cannot fully honour never makes it fail."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import pytest
from tier_router.providers.mock.instance import MAX_DEPTH, instance

NODE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
    },
    "required": ["name", "children"],
}
ENDLESS = {**NODE, "properties": {"children": {**NODE["properties"]["children"], "minItems": 1}}}
"""No finite value conforms: every node needs a child."""

CONFORMING: dict[str, dict[str, Any]] = {
    "required only": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "string bounds": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 12, "maxLength": 12},
            "tiny": {"type": "string", "maxLength": 2},
            "when": {"type": "string", "format": "date-time"},
        },
        "required": ["code", "tiny", "when"],
    },
    "enum and const": {
        "type": "object",
        "properties": {
            "unit": {"enum": ["c", "f"]},
            "v": {"const": 3},
            "t": {"type": "string", "enum": ["x"]},
        },
        "required": ["unit", "v", "t"],
    },
    "number bounds": {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "minimum": 10, "maximum": 12},
            "b": {"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 6},
            "c": {"type": "number", "minimum": -7.5, "maximum": -7.25},
            "d": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "e": {"type": "integer", "minimum": 15, "multipleOf": 7},
            "f": {"type": "integer", "maximum": -3},
        },
        "required": ["a", "b", "c", "d", "e", "f"],
    },
    "arrays": {
        "type": "object",
        "properties": {
            "three": {"type": "array", "items": {"type": "boolean"}, "minItems": 3},
            "none": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
            "tuple": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
            },
            "unique": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "uniqueItems": True},
        },
        "required": ["three", "none", "tuple", "unique"],
    },
    "unions": {
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 3}]},
            "one": {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "integer"}]},
            "either": {"type": ["null", "number"], "minimum": 2},
            "both": {
                "allOf": [{"type": "object", "required": ["x"]}, {"properties": {"x": {"type": "integer"}}}]
            },
        },
        "required": ["maybe", "one", "either", "both"],
    },
    "refs and recursion": {
        "$defs": {"node": NODE, "leaf": {"type": "string", "minLength": 5}},
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/node"}, "leaf": {"$ref": "#/$defs/leaf"}},
        "required": ["root", "leaf"],
    },
    "draft-7 definitions and draft-4 exclusive flags": {
        "definitions": {"pos": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}},
        "type": "object",
        "properties": {"p": {"$ref": "#/definitions/pos"}},
        "required": ["p"],
    },
    "min properties": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "minProperties": 2,
    },
    "top-level array": {
        "type": "array",
        "items": {"type": "object", "properties": {"k": {"type": "string"}}},
    },
    "top-level number": {"type": "number", "minimum": 41.5},
}


def check(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft4Validator if "definitions" in schema else jsonschema.Draft202012Validator
    validator(schema).validate(value)


@pytest.mark.parametrize("name", list(CONFORMING))
def test_the_instance_conforms_for_every_choice(name: str) -> None:
    schema = CONFORMING[name]
    for variant in range(4):
        value = instance(schema, variant=variant)
        json.dumps(value)  # a JSON value
        check(schema, value)


def test_strict_gives_every_property_and_lax_only_the_required() -> None:
    schema = CONFORMING["required only"]
    assert set(instance(schema)) == {"city"}
    assert set(instance(schema, strict=True)) == {"city", "days"}
    nested = {"type": "object", "properties": {"in": schema}, "required": ["in"]}
    assert set(instance(nested, strict=True)["in"]) == {"city", "days"}


def test_choices_differ_where_the_schema_leaves_room() -> None:
    schema = {
        "type": "object",
        "properties": {"s": {"type": "string"}, "n": {"type": "integer"}, "e": {"enum": ["a", "b", "c"]}},
        "required": ["s", "n", "e"],
    }
    values = [json.dumps(instance(schema, variant=v)) for v in range(3)]
    assert len(set(values)) == 3


def test_a_recursive_schema_ends_near_the_top_or_at_the_depth_bound() -> None:
    small = instance({"$defs": {"node": NODE}, "$ref": "#/$defs/node"})
    assert small["children"] == [{"name": "mock name", "children": []}]  # one child near the top
    endless = instance({"$defs": {"node": ENDLESS}, "$ref": "#/$defs/node"})
    depth = 0
    while endless.get("children"):
        endless, depth = endless["children"][0], depth + 1
    assert 2 <= depth <= MAX_DEPTH


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[0-9]+$"},
        {"not": {"type": "string"}},
        {"if": {"type": "string"}, "then": {"minLength": 3}},
        {"$ref": "https://example.com/schema.json"},
        {"$ref": "#/$defs/missing"},
        {"$ref": "#"},
        {"allOf": [{"$ref": "#"}]},
        {"anyOf": []},
        {"type": "object", "properties": ["not", "a", "map"], "required": "x"},
        {"type": "array", "items": 5, "minItems": "two"},
        {"type": "integer", "minimum": 5, "maximum": 1},
        {"type": "number", "multipleOf": 0},
        {"type": "mystery"},
        False,
        True,
        None,
        [],
        "string",
    ],
)
def test_unsupported_or_broken_schemas_still_give_a_json_value(schema: Any) -> None:
    json.dumps(instance(schema))
    json.dumps(instance(schema, strict=True, variant=2))


def test_a_hostile_schema_costs_little() -> None:
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"$ref": "#"} for i in range(20)},
        "required": [f"p{i}" for i in range(20)],
    }
    deep_arrays = {"type": "array", "minItems": 10_000, "items": {"$ref": "#"}}
    start = time.perf_counter()
    for schema in (wide, deep_arrays, {"allOf": [{"$ref": "#"}, {"$ref": "#"}]}):
        json.dumps(instance(schema))
    assert time.perf_counter() - start < 1.0
