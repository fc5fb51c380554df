"""`tool_args`: every tool call names an offered tool and carries a JSON object that conforms to
that tool's `parameters`; reasons name the call, the tool and the JSON path, never values."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.validators import Ask, Failure, Reply, build_one, validate
from tier_router.validators.tool_args import ToolArgs

from tests.support.answers import completion, message, request, tools_ask
from tests.support.openai_bodies import WEATHER_TOOL

CHECK = ToolArgs()
PARAMS = "arguments do not match the tool's parameters: "
ENUM = "must be one of the schema's enum values"
ARRAY = "arguments are an array, not a JSON object"
WEATHER = WEATHER_TOOL["function"]["parameters"]
BOOKING: dict[str, Any] = {  # OpenAI strict-mode function parameters
    "type": "object",
    "additionalProperties": False,
    "required": ["guests", "dates", "room"],
    "properties": {
        "guests": {"type": "array", "items": {"$ref": "#/$defs/guest"}, "minItems": 1},
        "dates": {
            "type": "object",
            "additionalProperties": False,
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "room": {"type": ["string", "null"], "enum": ["single", "double", None]},
    },
    "$defs": {
        "guest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        }
    },
}


def calls(*pairs: tuple[str, Any], text: Any = None) -> Reply:
    return Reply.of(completion(message(text, calls=list(pairs))))


def failure(reply: Reply, ask: Ask) -> str | None:
    got = validate((CHECK,), reply, ask)
    return got.reason if got else None


def test_applies_only_when_the_request_offers_tools() -> None:
    assert not CHECK.applies(Ask.of(request()))
    assert CHECK.applies(tools_ask(get_weather=WEATHER))
    assert CHECK.applies(Ask.of(request(functions=[{"name": "f", "parameters": {"type": "object"}}])))


def test_conforming_calls_and_a_text_answer_pass() -> None:
    ask = tools_ask(get_weather=WEATHER, book=BOOKING)
    booking = {"guests": [{"name": "Ada", "age": 36}], "dates": {"from": "a", "to": "b"}, "room": None}
    assert failure(calls(("get_weather", {"city": "Oslo", "unit": "c"}), ("book", booking)), ask) is None
    assert failure(Reply.of(completion(message("It is sunny."))), ask) is None


def test_an_unknown_tool_is_not_named() -> None:
    reason = failure(calls(("rm_rf\r\nx-evil: 1", {})), tools_ask(get_weather=WEATHER))
    assert reason == "tool call 0: names a tool the request did not offer"


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"city": "Oslo", "unit": "c"', "arguments are not valid JSON (line 1, column 29)"),
        ('["Oslo", "c"]', "arguments are an array, not a JSON object"),
        ('"Oslo"', "arguments are a string, not a JSON object"),
        ("42", "arguments are a number, not a JSON object"),
        ("null", "arguments are null, not a JSON object"),
        ('{"city": "Oslo"}', PARAMS + "$: missing required property 'unit'"),
        ('{"city": "Oslo", "unit": "kelvin"}',
         PARAMS + "$.unit: " + ENUM),
        ("", PARAMS + "$: missing required property 'city', 'unit'"),
        ("[" * 5000 + "]" * 5000, "arguments are not valid JSON (nested too deeply to read)"),
    ],
)  # fmt: skip
def test_bad_arguments_name_the_call_and_tool_never_values(arguments: str, reason: str) -> None:
    got = failure(calls(("get_weather", arguments)), tools_ask(get_weather=WEATHER))
    assert got == f"tool call 0 (get_weather): {reason}"
    assert "Oslo" not in got
    assert "kelvin" not in got


def test_the_failing_call_is_the_one_named() -> None:
    ask = tools_ask(get_weather=WEATHER, book=BOOKING)
    bad = {
        "guests": [{"name": "Ada", "age": 36}, {"name": "Bo", "age": -1}],
        "dates": {"from": "a", "to": "b"},
    }
    got = failure(
        calls(("get_weather", {"city": "Oslo", "unit": "c"}), ("book", {**bad, "room": "double"})), ask
    )
    assert got == "tool call 1 (book): " + PARAMS + "$.guests[1].age: fails minimum 0"
    extra = {**bad, "guests": [{"name": "Ada", "age": 3}], "room": "suite"}
    assert failure(calls(("book", extra)), ask) == ("tool call 0 (book): " + PARAMS + "$.room: " + ENUM)


def test_a_tool_without_parameters_only_needs_an_object() -> None:
    ask = tools_ask(ping=None)
    assert failure(calls(("ping", "")), ask) is None
    assert failure(calls(("ping", '{"any": [1, 2]}')), ask) is None
    assert (
        failure(calls(("ping", "[]")), ask) == "tool call 0 (ping): arguments are an array, not a JSON object"
    )


def test_a_tool_name_that_is_not_plain_is_not_echoed() -> None:
    ask = tools_ask(**{"weird name\n": {"type": "object"}})
    assert (
        failure(calls(("weird name\n", "[]")), ask)
        == "tool call 0: arguments are an array, not a JSON object"
    )


def test_the_deprecated_functions_form() -> None:
    ask = Ask.of(request(functions=[{"name": "get_weather", "parameters": WEATHER}]))
    assert failure(calls(("get_weather", {"city": 3, "unit": "c"})), ask) == (
        "tool call 0 (get_weather): " + PARAMS + "$.city: must be string"
    )


def test_the_deprecated_function_call_answer() -> None:
    ask = Ask.of(request(functions=[{"name": "get_weather", "parameters": WEATHER}]))
    legacy = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "get_weather", "arguments": "[1]"},
    }
    got = validate((CHECK,), Reply.of(completion(legacy)), ask)
    assert got == Failure("tool_args", "tool call 0 (get_weather): " + ARRAY)
    legacy["function_call"]["arguments"] = '{"city": "Oslo", "unit": "f"}'
    assert validate((CHECK,), Reply.of(completion(legacy)), ask) is None


def test_only_the_second_choice_fails() -> None:
    good = message(None, calls=[("get_weather", {"city": "Oslo", "unit": "c"})])
    bad = message(None, calls=[("get_weather", "{}")])
    got = validate((CHECK,), Reply.of(completion(good, bad)), tools_ask(get_weather=WEATHER))
    reason = "tool call 0 (get_weather): " + PARAMS + "$: missing required property 'city', 'unit'"
    assert got == Failure("tool_args", reason, 1)


def test_an_uncheckable_tool_schema_lets_the_call_pass() -> None:
    ask = tools_ask(fetch={"$ref": "https://127.0.0.1:9/schema.json"})
    assert failure(calls(("fetch", {"anything": 1})), ask) is None
    assert (
        failure(calls(("fetch", "[]")), ask)
        == "tool call 0 (fetch): arguments are an array, not a JSON object"
    )


def test_takes_no_options() -> None:
    assert isinstance(build_one("tool_args", {}), ToolArgs)
    with pytest.raises(ValueError, match=r"on\[1\]\.tool_args: tool_args takes no options"):
        build_one({"tool_args": {"strict": True}}, {}, "on[1]")
