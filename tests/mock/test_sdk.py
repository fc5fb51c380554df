"""The mock provider as a newcomer meets it: through the router, with the OpenAI SDK —
structured outputs, tool calls (plain and with the SDK's streaming helper), `n`, token
limits, and a flawed mock provider next to a clean one."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from tier_router.routing.loader import RulesError, parse_rules

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2},
        "age": {"type": "integer", "minimum": 18, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "role": {"enum": ["admin", "user"]},
        "address": {"$ref": "#/$defs/address"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "manager": {"anyOf": [{"$ref": "#/$defs/address"}, {"type": "null"}]},
    },
    "required": ["name", "age", "email", "role", "address", "tags", "manager"],
    "additionalProperties": False,
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string", "maxLength": 5}},
            "required": ["street", "zip"],
            "additionalProperties": False,
        }
    },
}
STRUCTURED = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_flight",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string", "minLength": 3, "maxLength": 3},
                    "destination": {"type": "string", "minLength": 3, "maxLength": 3},
                    "passengers": {"type": "integer", "minimum": 1},
                    "cabin": {"enum": ["economy", "business"]},
                },
                "required": ["origin", "destination", "passengers"],
            },
        },
    },
]
BOOK = {"type": "function", "function": {"name": "book_flight"}}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def arguments_of(call: Any) -> dict[str, Any]:
    return json.loads(call.function.arguments)


def test_structured_output_is_json_that_validates(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="clean", messages=user("Who?"), response_format=STRUCTURED)
    value = json.loads(completion.choices[0].message.content or "")
    jsonschema.Draft202012Validator(PERSON).validate(value)
    assert completion.usage
    assert completion.usage.prompt_tokens > 100


def test_json_object_is_a_json_object(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="clean", messages=user("Answer in JSON"), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_tools_give_a_call_with_the_required_arguments(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="clean", messages=user("Fly me to Lisbon"), tools=TOOLS, tool_choice=BOOK
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "book_flight"
    jsonschema.validate(arguments_of(call), TOOLS[1]["function"]["parameters"])
    assert {"origin", "destination", "passengers"} <= set(arguments_of(call))

    history = [
        *user("Fly me to Lisbon"),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "booked"},
    ]
    after = sdk.chat.completions.create(model="clean", messages=history, tools=TOOLS)
    assert after.choices[0].finish_reason == "stop"
    assert after.choices[0].message.content
    assert "booked" in after.choices[0].message.content


def test_the_streaming_helper_accumulates_the_tool_call(sdk: openai.OpenAI) -> None:
    with sdk.chat.completions.stream(
        model="clean", messages=user("Fly me to Lisbon"), tools=TOOLS, tool_choice=BOOK
    ) as stream:
        done = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "book_flight"
    assert call.id.startswith("call_")
    jsonschema.validate(arguments_of(call), TOOLS[1]["function"]["parameters"])
    assert [e.name for e in done] == ["book_flight"]
    plain = sdk.chat.completions.create(
        model="clean", messages=user("Fly me to Lisbon"), tools=TOOLS, tool_choice=BOOK
    )
    assert call.function.arguments == (plain.choices[0].message.tool_calls or [])[0].function.arguments


def test_n_gives_that_many_distinct_choices_streamed_or_not(sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(model="clean", messages=user("Hi"), n=3)
    texts = [c.message.content for c in completion.choices]
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert len(set(texts)) == 3
    streamed: dict[int, str] = {}
    finished: dict[int, str | None] = {}
    usage = None
    for chunk in sdk.chat.completions.create(
        model="clean", messages=user("Hi"), n=3, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            streamed[choice.index] = streamed.get(choice.index, "") + (choice.delta.content or "")
            finished[choice.index] = choice.finish_reason or finished.get(choice.index)
    assert [streamed[i] for i in range(3)] == texts
    assert finished == {0: "stop", 1: "stop", 2: "stop"}
    assert usage
    assert completion.usage
    assert usage.completion_tokens == completion.usage.completion_tokens


def test_max_tokens_cuts_the_answer(sdk: openai.OpenAI) -> None:
    long = "Tell me everything about the history of aviation, in great detail. " * 2
    completion = sdk.chat.completions.create(model="clean", messages=user(long), max_tokens=5)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage
    assert completion.usage.completion_tokens <= 5
    chunks = list(
        sdk.chat.completions.create(
            model="clean",
            messages=user(long),
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage
    assert chunks[-1].usage.completion_tokens <= 5


def is_json(text: str | None) -> bool:
    try:
        json.loads(text or "")
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_flawed_provider_breaks_json_and_a_clean_one_never(sdk: openai.OpenAI, stream: bool) -> None:
    for i in range(5):
        texts = {}
        for model in ("bad-json", "clean"):
            if stream:
                parts = sdk.chat.completions.create(
                    model=model, messages=user(f"Q{i}"), response_format=STRUCTURED, stream=True
                )
                texts[model] = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
            else:
                completion = sdk.chat.completions.create(
                    model=model, messages=user(f"Q{i}"), response_format=STRUCTURED
                )
                texts[model] = completion.choices[0].message.content
        assert not is_json(texts["bad-json"])
        assert is_json(texts["clean"])


def test_a_tools_flawed_provider_gives_arguments_that_do_not_validate(sdk: openai.OpenAI) -> None:
    schema = TOOLS[1]["function"]["parameters"]
    for i in range(6):
        completion = sdk.chat.completions.create(
            model="bad-tools", messages=user(f"Trip {i}"), tools=TOOLS, tool_choice=BOOK
        )
        call = (completion.choices[0].message.tool_calls or [])[0]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(arguments_of(call), schema)


def test_a_misspelt_option_fails_when_the_rules_load() -> None:
    rules = {
        "providers": {"typo": {"kind": "mock", "base_url": "mock://typo?flaw_rat=1"}},
        "models": {"typo": {"provider": "typo", "id": "mock-typo", "price": {"input": 0.1, "output": 0.4}}},
        "tiers": {"only-typo": ["typo"]},
        "default_tier": "only-typo",
    }
    with pytest.raises(RulesError, match="provider 'typo': base_url: unknown mock option 'flaw_rat'"):
        parse_rules(rules, "demo.yaml")
