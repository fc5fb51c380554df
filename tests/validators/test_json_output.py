"""`json`: valid JSON when the request asked for it, and json_schema conformance on real
schemas (nested objects, arrays, required, enums, additionalProperties false, $defs/$ref,
OpenAI strict-mode schemas); reasons name positions and keywords, never the answer's values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tier_router.validators import Ask, Choice, Reply, build_one, validate
from tier_router.validators.json_output import JsonOutput

from tests.support.answers import completion, json_ask, message, reply, request

CHECK = JsonOutput()

ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["order_id", "customer", "items", "status"],
    "properties": {
        "order_id": {"type": "string"},
        "status": {"type": "string", "enum": ["open", "paid", "shipped"]},
        "customer": {"$ref": "#/$defs/customer"},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sku", "qty", "price"],
                "properties": {
                    "sku": {"type": "string", "pattern": "^SKU-[0-9]{4}$"},
                    "qty": {"type": "integer", "minimum": 1},
                    "price": {"type": "number"},
                },
            },
        },
    },
    "$defs": {
        "customer": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "email"],
            "properties": {"name": {"type": "string"}, "email": {"type": ["string", "null"]}},
        }
    },
}

# OpenAI's strict-mode shape: every property required, nullable by type union, recursion by $ref.
STRICT_TREE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["root"],
    "properties": {"root": {"$ref": "#/$defs/node"}},
    "$defs": {
        "node": {
            "type": "object",
            "additionalProperties": False,
            "required": ["label", "kind", "children"],
            "properties": {
                "label": {"type": "string"},
                "kind": {"anyOf": [{"type": "string", "enum": ["leaf", "branch"]}, {"type": "null"}]},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
        }
    },
}


def order(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "order_id": "A-1",
        "status": "paid",
        "customer": {"name": "Ada", "email": None},
        "items": [{"sku": f"SKU-000{i}", "qty": i + 1, "price": 9.5} for i in range(4)],
    }
    doc.update(changes)
    return doc


def check(text: str, ask: Ask) -> str | None:
    return CHECK.check(Choice(text), ask)


def test_applies_only_when_the_request_asks_for_json() -> None:
    assert not CHECK.applies(Ask.of(request()))
    assert not CHECK.applies(Ask.of(request(response_format={"type": "text"})))
    assert CHECK.applies(json_ask())
    assert CHECK.applies(json_ask({"type": "object"}))
    # not asked for JSON: prose passes through validate() untouched
    assert validate((CHECK,), reply("plain prose, not JSON"), Ask.of(request())) is None


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ('{"answer": 42', "line 1, column 14"),
        ('```json\n{"a": 1}\n```', "line 1, column 1"),
        ('{\n  "a": 1,\n  "b": secret-value\n}', "line 3, column 8"),
        ("", "line 1, column 1"),
    ],
)
def test_invalid_json_names_line_and_column_not_content(text: str, position: str) -> None:
    reason = check(text, json_ask())
    assert reason is not None
    assert position in reason
    assert "secret" not in reason
    assert "answer" not in reason


def test_valid_json_of_any_kind_passes_json_object() -> None:
    for text in ['{"a": [1, 2, {"b": null}]}', "[1, 2]", '"a string"', " 3 \n"]:
        assert check(text, json_ask()) is None


def test_nan_and_infinity_are_not_json() -> None:
    assert check('{"a": NaN}', json_ask()) == "not valid JSON (NaN or Infinity)"
    assert check("[Infinity]", json_ask()) == "not valid JSON (NaN or Infinity)"


def test_a_conforming_answer_passes_the_schema() -> None:
    assert check(json.dumps(order()), json_ask(ORDER_SCHEMA)) is None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (order(items=[*order()["items"][:2], {"sku": "SKU-0002", "qty": 1, "price": "cheap"}]),
         "$.items[2].price: must be number"),
        (order(status="lost"), "$.status: must be one of the schema's enum values"),
        (order(customer={"name": "Ada"}), "$.customer: missing required property 'email'"),
        (order(customer={"name": "Ada", "email": 7}), "$.customer.email: must be string or null"),
        (order(extra_field="secret-value"), "$: has a property the schema does not allow "
                                            "(additionalProperties)"),
        (order(items=[]), "$.items: fails minItems 1"),
        (order(items=[{"sku": "SKU-1", "qty": 1, "price": 1}]),
         "$.items[0].sku: does not match the schema's pattern"),
        (order(items=[{"sku": "SKU-0001", "qty": 0, "price": 1}]), "$.items[0].qty: fails minimum 1"),
        ([order()], "$: must be object"),
    ],
)  # fmt: skip
def test_schema_failures_name_the_path_and_keyword(doc: Any, reason: str) -> None:
    got = check(json.dumps(doc), json_ask(ORDER_SCHEMA))
    assert got == f"does not match the schema: {reason}"
    assert "secret" not in got
    assert "cheap" not in got
    assert "lost" not in got


def test_strict_mode_recursive_schema() -> None:
    leaf = {"label": "x", "kind": "leaf", "children": []}
    tree = {"root": {"label": "r", "kind": None, "children": [leaf, {**leaf, "children": [leaf]}]}}
    assert check(json.dumps(tree), json_ask(STRICT_TREE)) is None
    deep = {**leaf, "children": [{"label": "y"}]}
    bad = {"root": {"label": "r", "kind": "branch", "children": [leaf, deep]}}
    assert check(json.dumps(bad), json_ask(STRICT_TREE)) == (
        "does not match the schema: $.root.children[1].children[0]: "
        "missing required property 'kind', 'children'"
    )
    wrong_kind = {"root": {"label": "r", "kind": "tree", "children": []}}
    assert check(json.dumps(wrong_kind), json_ask(STRICT_TREE)) == (
        "does not match the schema: $.root.kind: matches none of anyOf"
    )


def test_keys_the_schema_does_not_declare_are_masked_in_the_path() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    reason = check(json.dumps({"my-password-is-hunter2": "x"}), json_ask(schema))
    assert reason == "does not match the schema: $.*: must be integer"


def test_content_as_a_list_of_parts_is_joined() -> None:
    parts = [{"type": "text", "text": '{"order_id": "A-1", '}, {"type": "text", "text": '"status": 1}'}]
    schema = {"type": "object", "properties": {"status": {"type": "string"}}}
    got = validate((CHECK,), Reply.of(completion(message(parts))), json_ask(schema))
    assert got is not None
    assert got.reason == "does not match the schema: $.status: must be string"


def test_only_the_second_choice_fails() -> None:
    got = validate((CHECK,), reply('{"a": 1}', '{"a": '), json_ask())
    assert got is not None
    assert got.choice == 1
    assert got.validator == "json"


def test_a_refusal_is_not_json_and_tool_calls_pass() -> None:
    refused = Reply.of(completion(message(None, refusal="I can't do that")))
    got = validate((CHECK,), refused, json_ask())
    assert got is not None
    assert got.reason == "the model refused (message.refusal) instead of answering in JSON"
    calls = Reply.of(completion(message(None, calls=[("f", {})])))
    assert validate((CHECK,), calls, json_ask()) is None


def test_deeply_nested_answer_fails_cleanly() -> None:
    deep = "[" * 10_000 + "]" * 10_000
    assert check(deep, json_ask()) == "not valid JSON (nested too deeply to read)"
    assert check(deep, json_ask({"type": "array"})) == "not valid JSON (nested too deeply to read)"


def test_a_huge_number_fails_cleanly() -> None:
    assert check("1" * 5000, json_ask()) == "not valid JSON (a number too long to read)"


def test_a_megabyte_answer_is_checked() -> None:
    doc = {"items": [{"sku": f"SKU-{i % 10000:04d}", "qty": 1, "price": 1.5} for i in range(20_000)]}
    text = json.dumps(doc)
    assert len(text) > 900_000
    schema = {"type": "object", "properties": {"items": ORDER_SCHEMA["properties"]["items"]}}
    assert check(text, json_ask(schema)) is None
    assert check(text[:-1], json_ask(schema)).startswith("not valid JSON (line 1, column ")


def test_lone_surrogates_in_the_answer() -> None:
    assert check('{"a": "\ud800"}', json_ask({"type": "object"})) is None
    assert check("\ud800", json_ask()) is not None


def test_named_bare_and_takes_no_options() -> None:
    assert isinstance(build_one("json", {}), JsonOutput)
    with pytest.raises(ValueError, match=r"on\[0\]\.json: json takes no options"):
        build_one({"json": {"strict": True}}, {}, "on[0]")


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        ("", None),
        ("  \n ", None),
        ('{"a": ', None),
        ("[1, 2", None),
        ("-", None),
        ("tr", None),
        ("nul", None),
        ("false", None),
        ("Sure! Here is the JSON", "not valid JSON (line 1, column 1)"),
        ("```json\n{", "not valid JSON (line 1, column 1)"),
        ("\n\n  Here", "not valid JSON (line 3, column 3)"),
        ("trap", "not valid JSON (line 1, column 1)"),
        ("nice", "not valid JSON (line 1, column 1)"),
    ],
)
def test_early_gives_up_once_the_start_cannot_be_json(prefix: str, reason: str | None) -> None:
    assert CHECK.early(prefix, json_ask()) == reason
    if reason is not None:  # the same verdict the whole answer gets
        assert check(prefix + ' {"a": 1}', json_ask()) == reason


def test_early_only_when_json_was_asked_for() -> None:
    assert CHECK.early("Sure! Here is", Ask.of(request())) is None
