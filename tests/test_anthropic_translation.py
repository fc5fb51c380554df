"""OpenAI <-> Anthropic translation, checked against recorded-shape Anthropic payloads.

Fixtures under ``tests/fixtures/anthropic/`` follow the shapes of the Messages API docs and the
anthropic-sdk-python streaming fixtures. ``stream_X.sse`` and ``message_X.json`` describe the same
message, so a reassembled stream must equal the buffered translation. Every OpenAI object we
produce is also validated with the ``openai`` SDK's own types: if the SDK accepts it, clients will.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from tier_router.providers.anthropic import (
    ANTHROPIC_VERSION,
    PLACEHOLDER_USER_TEXT,
    StreamTranslator,
    TranslationError,
    UpstreamStreamError,
    build_headers,
    build_request,
    is_content_chunk,
    parse_response,
    translate_error,
    translate_usage,
)

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"
CREATED = 1_732_000_000
MODEL_ID = "claude-sonnet-4-20250514"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
        "strict": True,
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def load_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def load_sse(name: str) -> list[tuple[str, dict[str, Any]]]:
    """Minimal SSE reader for fixtures: (event name, parsed data) per event."""
    events = []
    for raw in (FIXTURES / name).read_text().strip().split("\n\n"):
        event, data = "", []
        for line in raw.splitlines():
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        events.append((event, json.loads("\n".join(data))))
    return events


def run_stream(
    events: list[tuple[str, dict[str, Any]]], *, include_usage: bool = True
) -> tuple[StreamTranslator, list[dict[str, Any]]]:
    translator = StreamTranslator(created=CREATED, include_usage=include_usage)
    chunks = [chunk for event, data in events for chunk in translator.feed(event, data)]
    return translator, chunks


def reassemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold chunks the way an OpenAI client does: concatenate content and per-index arguments."""
    content, calls, finish, usage = "", {}, None, None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            content += delta.get("content") or ""
            for call in delta.get("tool_calls") or []:
                slot = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": ""})
                slot["id"] = call.get("id", slot["id"])
                function = call.get("function") or {}
                slot["name"] = function.get("name", slot["name"])
                slot["arguments"] += function.get("arguments") or ""
            if choice["finish_reason"] is not None:
                assert finish is None, "finish_reason sent twice"
                finish = choice["finish_reason"]
    return {
        "content": content,
        "tool_calls": [
            {"id": c["id"], "name": c["name"], "input": json.loads(c["arguments"])}
            for _, c in sorted(calls.items())
        ],
        "finish_reason": finish,
        "usage": usage,
    }


def summarize(completion: dict[str, Any]) -> dict[str, Any]:
    """The same view as :func:`reassemble`, taken from a buffered chat.completion."""
    choice = completion["choices"][0]
    message = choice["message"]
    return {
        "content": message["content"] or "",
        "tool_calls": [
            {"id": c["id"], "name": c["function"]["name"], "input": json.loads(c["function"]["arguments"])}
            for c in message.get("tool_calls") or []
        ],
        "finish_reason": choice["finish_reason"],
        "usage": completion["usage"],
    }


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def build(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", [user("hi")])
    return build_request(body, MODEL_ID)


# --------------------------------------------------------------------------------------------
# request: basics
# --------------------------------------------------------------------------------------------


def test_minimal_request_has_only_what_anthropic_needs() -> None:
    assert build_request({"model": "tier-fast", "messages": [user("Hello")]}, MODEL_ID) == {
        "model": MODEL_ID,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [text("Hello")]}],
    }


def test_build_headers() -> None:
    assert build_headers("sk-ant-test") == {
        "x-api-key": "sk-ant-test",
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
    }
    assert ANTHROPIC_VERSION == "2023-06-01"


def test_client_body_is_not_mutated() -> None:
    """The proxy may retry the same body against another provider after a failure."""
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            assistant("Hi!  "),
            user([text("look"), {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]),
            assistant(None, tool_calls=[call("call_1", "get_weather", '{"location":"Paris"}')]),
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            user("thanks"),
            assistant("  "),
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_object"},
    }
    snapshot = copy.deepcopy(body)
    build_request(body, MODEL_ID)
    assert body == snapshot


def test_body_must_be_an_object() -> None:
    with pytest.raises(TranslationError, match="JSON object"):
        build_request([user("hi")], MODEL_ID)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# request: system / developer
# --------------------------------------------------------------------------------------------


def test_single_system_message_becomes_a_string() -> None:
    out = build(messages=[{"role": "system", "content": "You are terse."}, user("hi")])
    assert out["system"] == "You are terse."
    assert out["messages"] == [{"role": "user", "content": [text("hi")]}]


def test_system_and_developer_messages_anywhere_are_hoisted_in_order() -> None:
    out = build(
        messages=[
            {"role": "system", "content": [text("Rule one."), text("Rule two.")]},
            user("hi"),
            assistant("hello"),
            {"role": "developer", "content": "Rule three."},
            user("bye"),
        ]
    )
    assert out["system"] == [text("Rule one."), text("Rule two."), text("Rule three.")]
    # Hoisting the developer message leaves the two turns around it alternating.
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]


def test_system_cache_control_keeps_block_form() -> None:
    part = {"type": "text", "text": "Long shared context", "cache_control": {"type": "ephemeral"}}
    out = build(messages=[{"role": "system", "content": [part]}, user("hi")])
    assert out["system"] == [part]


def test_empty_system_content_is_omitted() -> None:
    assert "system" not in build(messages=[{"role": "system", "content": ""}, user("hi")])


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
        [{"type": "text", "text": 42}],
        None,
        ["bare string part"],
    ],
)
def test_system_content_must_be_text(content: Any) -> None:
    with pytest.raises(TranslationError, match=r"messages\[0\]"):
        build(messages=[{"role": "system", "content": content}, user("hi")])


# --------------------------------------------------------------------------------------------
# request: user content parts
# --------------------------------------------------------------------------------------------


def test_multipart_user_content_with_images() -> None:
    out = build(
        messages=[
            user(
                [
                    text("What is in these images?"),
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://upload.example.org/cat.jpg"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:IMAGE/JPEG;base64,/9j/4AAQ"},
                        "cache_control": {"type": "ephemeral"},
                    },
                ]
            )
        ]
    )
    assert out["messages"][0]["content"] == [
        text("What is in these images?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.example.org/cat.jpg"}},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


def test_text_part_cache_control_is_passed_through() -> None:
    part = {"type": "text", "text": "big document", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    assert build(messages=[user([part])])["messages"][0]["content"] == [part]


def test_pdf_file_part_becomes_document_block() -> None:
    part = {
        "type": "file",
        "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
    }
    assert build(messages=[user([text("Summarise"), part])])["messages"][0]["content"] == [
        text("Summarise"),
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
        },
    ]


@pytest.mark.parametrize(
    ("part", "error"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}, "image/bmp"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}, "base64"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,"}}, "base64"),
        ({"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}}, "data: or http"),
        ({"type": "image_url", "image_url": {}}, "url must be a string"),
        ({"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}, "input_audio"),
        ({"type": "file", "file": {"file_id": "file-abc123"}}, "file_id"),
        ({"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}}, "text/csv"),
        ({"type": "file", "file": {"file_data": "JVBERi0x"}}, "data: URL"),
        ({"type": "video_url", "video_url": {"url": "https://x.test/v.mp4"}}, "video_url"),
        ("just a string", "None"),
    ],
)
def test_untranslatable_user_parts_are_rejected(part: Any, error: str) -> None:
    with pytest.raises(TranslationError, match=error) as info:
        build(messages=[user([text("hi"), part])])
    assert r"messages[0].content[1]" in str(info.value)


def test_user_content_must_be_string_or_list() -> None:
    with pytest.raises(TranslationError, match=r"messages\[0\]: content"):
        build(messages=[user(None)])


# --------------------------------------------------------------------------------------------
# request: turn structure
# --------------------------------------------------------------------------------------------


def test_consecutive_same_role_messages_are_merged() -> None:
    out = build(
        messages=[user("one"), user([text("two")]), assistant("three"), assistant("four"), user("five")]
    )
    assert out["messages"] == [
        {"role": "user", "content": [text("one"), text("two")]},
        {"role": "assistant", "content": [text("three"), text("four")]},
        {"role": "user", "content": [text("five")]},
    ]


def test_empty_turns_are_dropped_and_neighbours_merged() -> None:
    out = build(messages=[user("hi"), assistant(""), user("still there?")])
    assert out["messages"] == [{"role": "user", "content": [text("hi"), text("still there?")]}]


def test_conversation_starting_with_assistant_gets_placeholder_user_turn() -> None:
    out = build(messages=[{"role": "system", "content": "s"}, assistant("How can I help?"), user("Weather?")])
    assert out["messages"] == [
        {"role": "user", "content": [text(PLACEHOLDER_USER_TEXT)]},
        {"role": "assistant", "content": [text("How can I help?")]},
        {"role": "user", "content": [text("Weather?")]},
    ]


def test_trailing_assistant_prefill_is_right_stripped() -> None:
    out = build(messages=[user("Give JSON"), assistant("Here it is: {  \n")])
    assert out["messages"][-1] == {"role": "assistant", "content": [text("Here it is: {")]}


def test_whitespace_only_prefill_is_dropped() -> None:
    out = build(messages=[user("hi"), assistant("   ")])
    assert out["messages"] == [{"role": "user", "content": [text("hi")]}]


def test_non_trailing_assistant_whitespace_is_kept() -> None:
    out = build(messages=[user("hi"), assistant("hello  "), user("bye")])
    assert out["messages"][1]["content"] == [text("hello  ")]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "non-empty list"),
        ("hi", "non-empty list"),
        (None, "non-empty list"),
        ([{"role": "system", "content": "only system"}], "at least one"),
        ([user("")], "at least one"),
        (["hi"], r"messages\[0\] must be an object"),
        ([{"role": "critic", "content": "x"}], "unsupported role 'critic'"),
        ([{"role": "function", "name": "f", "content": "x"}], "legacy 'function' role"),
    ],
)
def test_bad_message_lists_are_rejected(messages: Any, error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        build_request({"messages": messages}, MODEL_ID)


# --------------------------------------------------------------------------------------------
# request: tool calls and tool results
# --------------------------------------------------------------------------------------------


def test_tool_calls_and_results_round_trip_into_anthropic_blocks() -> None:
    out = build(
        messages=[
            user("Weather in Paris and the time?"),
            assistant(
                "Checking.",
                tool_calls=[
                    call("toolu_01A", "get_weather", '{"location": "Paris"}'),
                    call("toolu_01B", "get_time", ""),
                ],
            ),
            {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "toolu_01B", "content": [text("14:02"), text(" CET")]},
            user("Thanks! And tomorrow?"),
        ]
    )
    assert out["messages"] == [
        {"role": "user", "content": [text("Weather in Paris and the time?")]},
        {
            "role": "assistant",
            "content": [
                text("Checking."),
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [text("14:02"), text(" CET")]},
                text("Thanks! And tomorrow?"),
            ],
        },
    ]


def test_assistant_with_only_tool_calls_and_null_content() -> None:
    out = build(messages=[user("go"), assistant(None, tool_calls=[call("c1", "get_time", "{}")])])
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "c1", "name": "get_time", "input": {}}],
    }


def test_tool_results_are_moved_before_user_text_in_a_merged_turn() -> None:
    out = build(
        messages=[
            user("go"),
            assistant(None, tool_calls=[call("c1", "get_time", "{}")]),
            user("(also, be quick)"),
            {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        ]
    )
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "noon"},
        text("(also, be quick)"),
    ]


def test_empty_tool_result_has_no_content_key() -> None:
    out = build(
        messages=[
            user("go"),
            assistant(None, tool_calls=[call("c1", "ping", "{}")]),
            {"role": "tool", "tool_call_id": "c1", "content": ""},
        ]
    )
    assert out["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "c1"}]


def test_assistant_refusal_part_is_kept_as_text() -> None:
    out = build(
        messages=[
            user("x"),
            assistant([{"type": "refusal", "refusal": "I can't help with that."}]),
            user("ok"),
        ]
    )
    assert out["messages"][1]["content"] == [text("I can't help with that.")]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (assistant(None, tool_calls=[call("c1", "f", "{not json")]), "not valid JSON"),
        (assistant(None, tool_calls=[call("c1", "f", "[1, 2]")]), "JSON object"),
        (assistant(None, tool_calls=[call("c1", "f", {"a": 1})]), "JSON string"),
        (assistant(None, tool_calls=[{"type": "function", "function": {"name": "f"}}]), "id is required"),
        (assistant(None, tool_calls=[{"id": "c1", "type": "function", "function": {}}]), "function.name"),
        (assistant(None, tool_calls=[{"id": "c1", "type": "custom", "custom": {}}]), "only function"),
        (assistant(None, tool_calls={"id": "c1"}), "tool_calls must be a list"),
        (assistant([{"type": "image_url", "image_url": {"url": "https://x"}}]), "assistant content part"),
        (assistant(42), "content must be"),
        ({"role": "tool", "content": "orphan"}, "tool_call_id is required"),
        ({"role": "tool", "tool_call_id": "c1", "content": [{"type": "image_url"}]}, "only text parts"),
    ],
)
def test_bad_tool_messages_are_rejected(message: dict[str, Any], error: str) -> None:
    with pytest.raises(TranslationError, match=error) as info:
        build(messages=[user("go"), message])
    assert "messages[1]" in str(info.value)


# --------------------------------------------------------------------------------------------
# request: tools and tool_choice
# --------------------------------------------------------------------------------------------


def test_function_tools_become_anthropic_tools() -> None:
    out = build(tools=[WEATHER_TOOL, TIME_TOOL])
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        },
        # No parameters: Anthropic still needs an object schema.
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in out  # Anthropic's default already is auto


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "get_time"}}, None, {"type": "tool", "name": "get_time"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        ),
        ("none", False, {"type": "none"}),
        ("auto", True, {"type": "auto"}),
    ],
)
def test_tool_choice_mapping(tool_choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"tools": [WEATHER_TOOL, TIME_TOOL], "tool_choice": tool_choice}
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = build(**body)
    assert out["tool_choice"] == expected
    assert len(out["tools"]) == 2  # "none" keeps the tools so tool_use history stays valid


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in build(tool_choice="auto", parallel_tool_calls=False)
    assert "tool_choice" not in build(tool_choice="none")
    with pytest.raises(TranslationError, match="requires tools"):
        build(tool_choice="required")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "'nope'",
        ),
        ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "unsupported tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]}, "only function tools"),
        ({"tools": [{"type": "function", "function": {"description": "no name"}}]}, "function.name"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]}, "JSON Schema"),
        ({"tools": {"get_time": {}}}, "tools must be a list"),
    ],
)
def test_bad_tools_are_rejected(body: dict[str, Any], error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        build(**body)


# --------------------------------------------------------------------------------------------
# request: sampling, limits and the rest
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "", "b"], ["a", "b"])])
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str]) -> None:
    assert build(stop=stop)["stop_sequences"] == expected


@pytest.mark.parametrize("stop", [None, [], ""])
def test_empty_stop_is_omitted(stop: Any) -> None:
    assert "stop_sequences" not in build(stop=stop)


@pytest.mark.parametrize("stop", [5, ["ok", 5], {"a": 1}])
def test_bad_stop_is_rejected(stop: Any) -> None:
    with pytest.raises(TranslationError, match="stop"):
        build(stop=stop)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, 4096),
        ({"max_tokens": 300}, 300),
        ({"max_completion_tokens": 500}, 500),
        ({"max_tokens": 300, "max_completion_tokens": 500}, 500),
        ({"max_tokens": 300, "max_completion_tokens": None}, 300),
    ],
)
def test_max_tokens(fields: dict[str, Any], expected: int) -> None:
    assert build(**fields)["max_tokens"] == expected


def test_default_max_tokens_is_configurable() -> None:
    assert build_request({"messages": [user("hi")]}, MODEL_ID, default_max_tokens=1024)["max_tokens"] == 1024


@pytest.mark.parametrize(
    "fields",
    [
        {"max_tokens": 0},
        {"max_tokens": -5},
        {"max_tokens": "100"},
        {"max_tokens": 1.5},
        {"max_completion_tokens": True},
    ],
)
def test_bad_max_tokens_is_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(TranslationError, match="positive integer"):
        build(**fields)


@pytest.mark.parametrize(("given", "sent"), [(0, 0), (0.3, 0.3), (1, 1), (1.5, 1.0), (2, 1.0)])
def test_temperature_is_clamped_to_anthropic_range(given: float, sent: float) -> None:
    assert build(temperature=given)["temperature"] == sent


@pytest.mark.parametrize("value", [-0.1, 2.1, "hot", True])
def test_bad_temperature_is_rejected(value: Any) -> None:
    with pytest.raises(TranslationError, match="temperature"):
        build(temperature=value)


def test_top_p_is_passed_through_and_validated() -> None:
    assert build(top_p=0.9)["top_p"] == 0.9
    with pytest.raises(TranslationError, match="top_p"):
        build(top_p=1.5)


def test_stream_flag() -> None:
    assert build(stream=True)["stream"] is True
    assert "stream" not in build(stream=False)


def test_user_becomes_metadata_user_id() -> None:
    assert build(user="user-123")["metadata"] == {"user_id": "user-123"}
    assert build(user="old", safety_identifier="new")["metadata"] == {"user_id": "new"}
    assert "metadata" not in build(user="")


def test_json_object_response_format_appends_system_instruction() -> None:
    out = build(
        messages=[{"role": "system", "content": "You extract data."}, user("Name: Ada")],
        response_format={"type": "json_object"},
    )
    first, instruction = out["system"]
    assert first == text("You extract data.")
    assert instruction["type"] == "text"
    assert "JSON object" in instruction["text"]


def test_json_schema_response_format_puts_schema_in_system() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    out = build(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "description": "A person", "schema": schema, "strict": True},
        }
    )
    instruction = out["system"]  # the only system content, so a plain string
    assert isinstance(instruction, str)
    assert "Schema name: person" in instruction
    assert "Schema description: A person" in instruction
    assert json.loads(instruction.splitlines()[-1]) == schema


def test_text_response_format_is_a_no_op() -> None:
    assert "system" not in build(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("response_format", "error"),
    [
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema must be an object"),
        ({"type": "json_schema"}, "schema must be an object"),
        ({"type": "grammar", "grammar": "..."}, "unsupported response_format type: 'grammar'"),
        ("json", "unsupported response_format type: None"),
    ],
)
def test_bad_response_format_is_rejected(response_format: Any, error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        build(response_format=response_format)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"n": 2}, "n > 1"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "audio"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "legacy"),
        ({"function_call": "auto"}, "legacy"),
        ({"web_search_options": {}}, "web_search_options"),
    ],
)
def test_features_we_cannot_deliver_are_rejected(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        build(**fields)


def test_hint_only_openai_fields_are_ignored() -> None:
    baseline = build()
    out = build(
        model="gpt-4o",
        n=1,
        logprobs=False,
        modalities=["text"],
        frequency_penalty=0.5,
        presence_penalty=0.2,
        logit_bias={"50256": -100},
        seed=7,
        service_tier="auto",
        store=True,
        metadata={"team": "a"},
        prediction={"type": "content", "content": "x"},
        reasoning_effort="high",
        verbosity="low",
        prompt_cache_key="k",
        stream_options={"include_usage": True},
        some_future_field={"x": 1},
    )
    assert out == baseline


# --------------------------------------------------------------------------------------------
# response (buffered)
# --------------------------------------------------------------------------------------------


def test_text_response() -> None:
    completion = parse_response(load_json("message_text.json"), created=CREATED)
    assert completion == {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": CREATED,
        "model": "claude-sonnet-4-20250514",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello! Paris is the capital of France.",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12 + 1800,
            "completion_tokens": 14,
            "total_tokens": 12 + 1800 + 14,
            "prompt_tokens_details": {"cached_tokens": 1800, "cache_write_tokens": 0},
        },
    }
    ChatCompletion.model_validate(completion)


def test_tool_use_response() -> None:
    completion = parse_response(load_json("message_tool_use.json"), created=CREATED)
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert (
        choice["message"]["content"] == "I'll check the current weather in Paris and the local time for you."
    )
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris, France","unit":"celsius"}'},
        },
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
    ]
    parsed = ChatCompletion.model_validate(completion)
    assert parsed.choices[0].message.tool_calls[1].function.arguments == "{}"


def test_tool_only_response_has_null_content_and_unescaped_unicode() -> None:
    data = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Zürich"}}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 9},
    }
    message = parse_response(data, created=CREATED)["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"]["arguments"] == '{"location":"Zürich"}'


def test_cache_usage_is_counted_and_kept_apart() -> None:
    completion = parse_response(load_json("message_cache_usage.json"), created=CREATED)
    assert completion["usage"] == {
        "prompt_tokens": 21 + 1024 + 188086,
        "completion_tokens": 393,
        "total_tokens": 21 + 1024 + 188086 + 393,
        "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 188086},
    }
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["model"] == "claude-3-7-sonnet-20250219"  # Anthropic's reported model
    ChatCompletion.model_validate(completion)


def test_thinking_blocks_are_dropped_but_thinking_tokens_reported() -> None:
    completion = parse_response(load_json("message_thinking.json"), created=CREATED)
    message = completion["choices"][0]["message"]
    assert message["content"] == "27 × 453 = 12,231"
    assert "12231." not in json.dumps(completion)  # nothing from the thinking block leaks
    assert completion["usage"]["completion_tokens"] == 182
    assert completion["usage"]["completion_tokens_details"] == {"reasoning_tokens": 151}
    ChatCompletion.model_validate(completion)


def test_multiple_text_blocks_are_concatenated() -> None:
    data = load_json("message_text.json")
    data["content"] = [text("Part one. "), {"type": "server_tool_use", "id": "srvtoolu_1"}, text("Part two.")]
    assert parse_response(data, created=CREATED)["choices"][0]["message"]["content"] == "Part one. Part two."


def test_empty_content_gives_empty_string() -> None:
    data = load_json("message_text.json") | {"content": [], "stop_reason": "max_tokens"}
    completion = parse_response(data, created=CREATED)
    assert completion["choices"][0]["message"]["content"] == ""
    ChatCompletion.model_validate(completion)


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("some_future_reason", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(stop_reason: Any, finish_reason: str) -> None:
    data = load_json("message_text.json") | {"stop_reason": stop_reason}
    completion = parse_response(data, created=CREATED)
    assert completion["choices"][0]["finish_reason"] == finish_reason
    ChatCompletion.model_validate(completion)


def test_translate_usage_tolerates_missing_and_null_fields() -> None:
    assert translate_usage({"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": None}) == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    }


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], "not a JSON object"),
        (load_json("error_overloaded_529.json"), "error body: Overloaded"),
        ({"type": "message", "content": []}, "not an Anthropic message"),
        ({"type": "completion", "id": "x", "content": []}, "not an Anthropic message"),
        ({"type": "message", "id": "msg_1", "content": "hello"}, "no content list"),
        ({"type": "message", "id": "msg_1", "content": [{"type": "tool_use", "input": {}}]}, "id or name"),
    ],
)
def test_malformed_upstream_response_raises(data: Any, error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        parse_response(data, created=CREATED)


# --------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------


def test_text_stream_chunks() -> None:
    translator, chunks = run_stream(load_sse("stream_text.sse"))
    envelope = {
        "id": "chatcmpl-01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "claude-sonnet-4-20250514",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**envelope, "choices": [choice], "usage": None}

    assert chunks == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hello!"}),
        chunk({"content": " Paris is the capital"}),
        chunk({"content": " of France."}),
        chunk({}, "stop"),
        {**envelope, "choices": [], "usage": translator.usage},
    ]
    assert translator.usage == {
        "prompt_tokens": 1812,
        "completion_tokens": 14,
        "total_tokens": 1826,
        "prompt_tokens_details": {"cached_tokens": 1800, "cache_write_tokens": 0},
    }
    assert translator.model == "claude-sonnet-4-20250514"
    assert translator.finished
    for produced in chunks:
        ChatCompletionChunk.model_validate(produced)


def test_without_include_usage_there_is_no_usage_chunk_or_field() -> None:
    translator, chunks = run_stream(load_sse("stream_text.sse"), include_usage=False)
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert translator.usage is not None  # still known to the proxy for accounting


def test_tool_use_stream_indexes_count_tool_calls_only() -> None:
    _, chunks = run_stream(load_sse("stream_tool_use.sse"))
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_deltas == [
        [
            {
                "index": 0,
                "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
        # The empty partial_json fragment produced no chunk.
        [{"index": 0, "function": {"arguments": '{"locati'}}],
        [{"index": 0, "function": {"arguments": 'on": "Paris, Fr'}}],
        [{"index": 0, "function": {"arguments": 'ance", "unit": "cels'}}],
        [{"index": 0, "function": {"arguments": 'ius"}'}}],
        # Anthropic block index 2 is the second tool call: OpenAI index 1.
        [
            {
                "index": 1,
                "id": "toolu_01A09q90qw90lq917835lq9",
                "type": "function",
                "function": {"name": "get_time", "arguments": ""},
            }
        ],
        # Its input never streamed, so "{}" is sent when the block stops.
        [{"index": 1, "function": {"arguments": "{}"}}],
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    for produced in chunks:
        ChatCompletionChunk.model_validate(produced)


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking"])
def test_reassembled_stream_equals_buffered_translation(name: str) -> None:
    translator, chunks = run_stream(load_sse(f"stream_{name}.sse"))
    buffered = parse_response(load_json(f"message_{name}.json"), created=CREATED)

    assert reassemble(chunks) == summarize(buffered)
    assert translator.usage == buffered["usage"]
    assert {c["id"] for c in chunks} == {buffered["id"]}
    assert {c["model"] for c in chunks} == {buffered["model"]}


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking"])
def test_openai_sdk_accumulates_the_stream_into_the_buffered_completion(name: str) -> None:
    """The SDK's own stream accumulator is the reference OpenAI client."""
    _, chunks = run_stream(load_sse(f"stream_{name}.sse"))
    state = ChatCompletionStreamState()
    for produced in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(produced))
    streamed = state.get_final_completion()
    buffered = ChatCompletion.model_validate(
        parse_response(load_json(f"message_{name}.json"), created=CREATED)
    )

    got, want = streamed.choices[0], buffered.choices[0]
    assert got.finish_reason == want.finish_reason
    assert (got.message.content or "") == (want.message.content or "")
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in got.message.tool_calls or []
    ] == [(c.id, c.function.name, json.loads(c.function.arguments)) for c in want.message.tool_calls or []]
    assert streamed.usage == buffered.usage
    assert streamed.id == buffered.id


def test_thinking_stream_exposes_no_thinking() -> None:
    translator, chunks = run_stream(load_sse("stream_thinking.sse"))
    assert [c for c in chunks if is_content_chunk(c)] == [chunks[1]]
    assert chunks[1]["choices"][0]["delta"] == {"content": "27 × 453 = 12,231"}
    assert "12231" not in json.dumps(chunks)
    assert "EqQB" not in json.dumps(chunks)  # nor the signature
    assert translator.usage["completion_tokens_details"] == {"reasoning_tokens": 151}


def test_error_event_raises_upstream_stream_error_after_partial_output() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=False)
    *events, (error_event, error_data) = load_sse("stream_error.sse")
    produced = [chunk for event, data in events for chunk in translator.feed(event, data)]
    with pytest.raises(UpstreamStreamError) as info:
        translator.feed(error_event, error_data)
    assert info.value.error_type == "overloaded_error"
    assert info.value.message == "Overloaded"
    assert isinstance(info.value, TranslationError)
    assert reassemble(produced)["content"] == "Once upon"
    assert not translator.finished


def test_error_event_without_details_still_raises() -> None:
    with pytest.raises(UpstreamStreamError) as info:
        StreamTranslator(created=CREATED, include_usage=False).feed("error", {"type": "error"})
    assert info.value.error_type == "api_error"


def test_usage_is_merged_from_start_and_delta() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=True)
    assert translator.usage is None
    events = load_sse("stream_tool_use.sse")
    translator.feed(*events[0])
    assert translator.usage["prompt_tokens"] == 472
    assert translator.usage["completion_tokens"] == 2
    for event, data in events[1:]:
        translator.feed(event, data)
    assert translator.usage["prompt_tokens"] == 472  # kept from message_start
    assert translator.usage["completion_tokens"] == 89  # cumulative value from message_delta
    assert translator.raw_usage["service_tier"] == "standard"  # raw Anthropic usage stays available


def test_cache_write_tokens_in_stream_usage() -> None:
    start = load_sse("stream_text.sse")[0][1]
    start["message"]["usage"] |= {"cache_creation_input_tokens": 500, "cache_read_input_tokens": 0}
    translator = StreamTranslator(created=CREATED, include_usage=True)
    translator.feed("message_start", start)
    translator.feed(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {},
            "usage": {"output_tokens": 7, "cache_read_input_tokens": None},
        },
    )
    assert translator.usage == {
        "prompt_tokens": 512,
        "completion_tokens": 7,
        "total_tokens": 519,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 500},
    }
    assert translator.raw_usage["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }


def test_refusal_stream_finishes_with_content_filter() -> None:
    events = [
        ("message_start", load_sse("stream_text.sse")[0][1]),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": "refusal",
                    "stop_sequence": None,
                    "stop_details": {"type": "refusal"},
                },
                "usage": {"output_tokens": 120},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    _, chunks = run_stream(events)
    assert reassemble(chunks)["finish_reason"] == "content_filter"
    assert not any(is_content_chunk(c) for c in chunks)


def test_ping_and_unknown_events_produce_nothing() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=True)
    assert translator.feed("ping", {"type": "ping"}) == []  # allowed even before message_start
    translator.feed(*load_sse("stream_text.sse")[0])
    assert translator.feed("content_block_future", {"type": "content_block_future", "index": 0}) == []
    assert (
        translator.feed(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}},
        )
        == []
    )
    assert (
        translator.feed(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {},
                },
            },
        )
        == []
    )


def test_unnamed_sse_events_fall_back_to_payload_type() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=False)
    translator.feed("", load_sse("stream_text.sse")[0][1])
    chunks = translator.feed(
        "message", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}
    )
    assert chunks[0]["choices"][0]["delta"] == {"content": "hi"}


def test_text_in_content_block_start_is_not_lost() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=False)
    translator.feed(*load_sse("stream_text.sse")[0])
    chunks = translator.feed(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "Hi"}},
    )
    assert chunks[0]["choices"][0]["delta"] == {"content": "Hi"}


def test_message_stop_without_stop_reason_still_finishes() -> None:
    events = load_sse("stream_text.sse")
    events = [e for e in events if e[0] != "message_delta"]
    translator, chunks = run_stream(events)
    assert reassemble(chunks)["finish_reason"] == "stop"
    assert translator.finished


def test_finished_only_after_message_stop_and_extra_stop_is_harmless() -> None:
    events = load_sse("stream_text.sse")
    translator, _ = run_stream(events[:-1])
    assert not translator.finished
    assert translator.feed(*events[-1])  # the usage chunk
    assert translator.finished
    assert translator.feed(*events[-1]) == []


@pytest.mark.parametrize(
    ("event", "data", "error"),
    [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}},
            "before message_start",
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
            "before message_start",
        ),
        ("message_start", {"type": "message_start", "message": {"content": []}}, "no message id"),
        ("message_start", [], "not a JSON object"),
    ],
)
def test_malformed_stream_start_raises(event: str, data: Any, error: str) -> None:
    with pytest.raises(TranslationError, match=error):
        StreamTranslator(created=CREATED, include_usage=False).feed(event, data)


@pytest.mark.parametrize(
    ("event", "data", "error"),
    [
        ("message_start", load_sse("stream_text.sse")[0][1], "message_start twice"),
        ("content_block_delta", {"type": "content_block_delta", "index": 0}, "no delta"),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 7,
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            },
            "unknown tool block 7",
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "input": {}}},
            "id or name",
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "content_block": {"type": "text", "text": ""}},
            "malformed",
        ),
    ],
)
def test_malformed_stream_events_raise(event: str, data: Any, error: str) -> None:
    translator = StreamTranslator(created=CREATED, include_usage=False)
    translator.feed(*load_sse("stream_text.sse")[0])
    with pytest.raises(TranslationError, match=error) as info:
        translator.feed(event, data)
    assert not isinstance(info.value, UpstreamStreamError)


# --------------------------------------------------------------------------------------------
# is_content_chunk
# --------------------------------------------------------------------------------------------


def test_is_content_chunk_only_for_real_output() -> None:
    _, text_chunks = run_stream(load_sse("stream_text.sse"))
    _, tool_chunks = run_stream(load_sse("stream_tool_use.sse"))
    role, *contents, finish, usage = text_chunks
    assert not is_content_chunk(role)
    assert all(is_content_chunk(c) for c in contents)
    assert not is_content_chunk(finish)
    assert not is_content_chunk(usage)
    first_tool = next(c for c in tool_chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    assert is_content_chunk(first_tool)
    assert not is_content_chunk({"choices": [{"index": 0, "delta": {"content": ""}}]})


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_overloaded_529_body() -> None:
    assert translate_error(529, load_json("error_overloaded_529.json")) == ("server_error", "Overloaded")


def test_invalid_request_400_body_keeps_upstream_message() -> None:
    kind, message = translate_error(400, load_json("error_invalid_request_400.json"))
    assert kind == "invalid_request_error"
    assert message.startswith("messages: roles must alternate")


@pytest.mark.parametrize(
    ("status", "anthropic_type", "openai_type"),
    [
        (401, "authentication_error", "authentication_error"),
        (403, "permission_error", "permission_error"),
        (404, "not_found_error", "not_found_error"),
        (413, "request_too_large", "invalid_request_error"),
        (402, "billing_error", "insufficient_quota"),
        (429, "rate_limit_error", "rate_limit_error"),
        (500, "api_error", "server_error"),
        (504, "timeout_error", "timeout"),
        (500, "brand_new_error", "server_error"),
        (409, "brand_new_error", "invalid_request_error"),
    ],
)
def test_error_type_mapping(status: int, anthropic_type: str, openai_type: str) -> None:
    body = {"type": "error", "error": {"type": anthropic_type, "message": "boom"}}
    assert translate_error(status, body) == (openai_type, "boom")


@pytest.mark.parametrize(
    ("status", "data", "expected"),
    [
        (413, None, ("invalid_request_error", "Anthropic API error (HTTP 413)")),
        (429, {"unexpected": True}, ("rate_limit_error", "Anthropic API error (HTTP 429)")),
        (502, {"error": "bad gateway"}, ("server_error", "Anthropic API error (HTTP 502)")),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error"}},
            ("server_error", "Anthropic API error (HTTP 529, overloaded_error)"),
        ),
    ],
)
def test_error_without_usable_body_falls_back_on_status(
    status: int, data: Any, expected: tuple[str, str]
) -> None:
    assert translate_error(status, data) == expected
