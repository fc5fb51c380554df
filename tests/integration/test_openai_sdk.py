"""The router as an application sees it: the real OpenAI SDK (sync and async) against the
router under uvicorn, with fake providers behind it on real sockets.

Covers answers (content, provider model id, usage, tool calls for the OpenAI and Anthropic
kinds, streams incl. include_usage), the x-router-* headers, what each provider actually
received, the models list, and the errors a client can cause (unknown model, bad router
key, a request the provider rejects).
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.support.openai_bodies import WEATHER_TOOL

pytestmark = pytest.mark.integration


def user(text: str = "What is the capital of France?") -> Any:
    return [{"role": "user", "content": text}]


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def stream_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """Reassemble streamed tool-call deltas the way SDK users do: by index."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    return calls


# ----------------------------------------------------------------------------------------- answers


def test_completion_has_content_provider_model_and_usage(stack, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="auto", messages=user())

    assert reply.object == "chat.completion"
    assert reply.model == "gpt-a-2025"  # what the provider says answered, not "auto"
    content = reply.choices[0].message.content
    assert content is not None
    assert "Hello from fake-a" in content
    assert "What is the capital of France?" in content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert stack.a.requests == 1
    assert stack.b.requests == 0


def test_anthropic_tier_answers_in_openai_shape(stack, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="claude-only", messages=user("Tell me about Paris"))

    assert reply.object == "chat.completion"
    assert reply.model == "claude-test-1"
    assert reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant"
    assert "Hello from fake-anthropic" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert stack.anthropic.requests == 1


def test_openai_kind_tool_call(stack, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fast", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL]
    )

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert set(args) == {"city", "unit"}
    assert args["unit"] == "c"
    # The tools reached the provider untouched.
    assert stack.a.last["body"]["tools"] == [WEATHER_TOOL]


def test_anthropic_kind_tool_call(stack, client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="claude-only", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL]
    )

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert calls[0].id.startswith("toolu_")
    args = json.loads(calls[0].function.arguments)
    assert set(args) == {"city", "unit"}
    # Translated to Anthropic's tool shape on the way in.
    sent = stack.anthropic.last["body"]
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]


def test_stream_reassembles_to_the_non_stream_answer(stack, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="fast", messages=user("stream me please"))
    chunks = list(
        client.chat.completions.create(model="fast", messages=user("stream me please"), stream=True)
    )

    assert chunks[0].choices[0].delta.role == "assistant"
    assert stream_text(chunks) == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert {c.model for c in chunks} == {"gpt-a-2025"}
    # The client did not ask for usage: no usage-only chunk, although the router asked the provider.
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert stack.a.last["body"]["stream_options"] == {"include_usage": True}


def test_stream_include_usage_yields_a_final_usage_chunk(stack, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="fast", messages=user("count my tokens"))
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=user("count my tokens"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert stream_text(chunks) == whole.choices[0].message.content
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    streamed = chunks[-1].usage.model_dump()
    assert streamed.pop("cost_usd") > 0  # the router prices the stream's usage chunk
    assert streamed == whole.usage.model_dump()
    assert [c for c in chunks[:-1] if c.usage is not None] == []


def test_anthropic_stream_arrives_as_sdk_chunks(stack, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="claude-only", messages=user("stream from claude"))
    chunks = list(
        client.chat.completions.create(
            model="claude-only",
            messages=user("stream from claude"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.model for c in chunks} == {"claude-test-1"}
    assert stream_text(chunks) == whole.choices[0].message.content
    assert "Hello from fake-anthropic" in stream_text(chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert stack.anthropic.last["body"]["stream"] is True


@pytest.mark.parametrize(("tier", "id_prefix"), [("fast", "call_"), ("claude-only", "toolu_")])
def test_streamed_tool_call_reassembles(stack, client: openai.OpenAI, tier: str, id_prefix: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=tier, messages=user("Weather in Paris?"), tools=[WEATHER_TOOL], stream=True
        )
    )

    calls = stream_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"].startswith(id_prefix)
    assert calls[0]["name"] == "get_weather"
    assert set(json.loads(calls[0]["arguments"])) == {"city", "unit"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.anyio
async def test_async_client_completion_and_stream(stack) -> None:
    async with stack.async_sdk() as client:
        reply = await client.chat.completions.create(model="auto", messages=user("async hello"))
        stream = await client.chat.completions.create(
            model="auto", messages=user("async hello"), stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]

    assert reply.model == "gpt-a-2025"
    assert reply.usage is not None
    assert stream_text(chunks) == reply.choices[0].message.content
    assert chunks[-1].usage is not None
    assert {
        k: v for k, v in chunks[-1].usage.model_dump().items() if k != "cost_usd"
    } == reply.usage.model_dump()


@pytest.mark.anyio
async def test_async_client_anthropic_stream_and_tools(stack) -> None:
    async with stack.async_sdk() as client:
        stream = await client.chat.completions.create(
            model="claude-only", messages=user("async claude"), stream=True
        )
        chunks = [chunk async for chunk in stream]
        tool_reply = await client.chat.completions.create(
            model="claude-only", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL]
        )

    assert "Hello from fake-anthropic" in stream_text(chunks)
    assert {c.model for c in chunks} == {"claude-test-1"}
    calls = tool_reply.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].function.name == "get_weather"


# ----------------------------------------------------------------------------------------- headers


def test_router_headers_on_a_rule_routed_answer(stack, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user())
    reply = raw.parse()

    assert raw.status_code == 200
    assert raw.headers["x-router-tier"] == "fast"
    assert raw.headers["x-router-rule"] == "default"
    assert raw.headers["x-router-model"] == "model-a"
    assert raw.headers["x-router-provider"] == "openai-a"
    assert raw.headers["x-router-attempts"] == "1"
    assert raw.headers["x-router-priority"] == "normal"
    # The provider's request id and rate-limit headers pass through.
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert reply.model == "gpt-a-2025"


def test_router_headers_when_a_rule_matches_and_anthropic_answers(stack, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=user("Please prove that 2 is prime")
    )

    assert raw.headers["x-router-tier"] == "smart"
    assert raw.headers["x-router-rule"] == "needs-thinking"
    assert raw.headers["x-router-model"] == "claude"
    assert raw.headers["x-router-provider"] == "anthropic"
    assert raw.headers["x-router-attempts"] == "1"
    # Anthropic's `request-id` is passed on as x-request-id.
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.parse().model == "claude-test-1"


def test_router_headers_on_a_stream_and_an_explicit_model(stack, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="model-b", messages=user(), stream=True, extra_headers={"x-priority": "high"}
    )
    chunks = list(raw.parse())

    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-router-tier"] == "fast"  # the named model's tier (its fallbacks)
    assert raw.headers["x-router-rule"] == "explicit"
    assert raw.headers["x-router-model"] == "model-b"
    assert raw.headers["x-router-provider"] == "openai-b"
    assert raw.headers["x-router-attempts"] == "1"
    assert raw.headers["x-router-priority"] == "high"
    assert raw.headers["x-request-id"].startswith("req_")
    assert "Hello from fake-b" in stream_text(chunks)
    assert stack.a.requests == 0


def test_alias_routes_to_its_tier(stack, client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=user())

    assert raw.headers["x-router-tier"] == "fast"
    assert raw.headers["x-router-model"] == "model-a"
    assert raw.parse().model == "gpt-a-2025"


# --------------------------------------------------------------------------- what the provider got


def test_openai_provider_receives_model_id_unknown_fields_and_its_own_key(stack, client) -> None:
    client.chat.completions.create(
        model="auto",
        messages=user(),
        temperature=0.3,
        extra_body={"foo_custom": 1, "nested_custom": {"keep": ["me"]}},
    )

    seen = stack.a.last
    assert seen["path"] == "/v1/chat/completions"
    body = seen["body"]
    assert body["model"] == "gpt-a-2025"
    assert body["foo_custom"] == 1
    assert body["nested_custom"] == {"keep": ["me"]}
    assert body["temperature"] == 0.3
    assert body["messages"] == user()
    headers = seen["headers"]
    assert headers["authorization"] == "Bearer " + stack.keys["OPENAI_KEY"]
    assert "rk-test" not in json.dumps(seen)


def test_anthropic_provider_receives_model_id_and_x_api_key(stack, client: openai.OpenAI) -> None:
    client.chat.completions.create(
        model="claude-only", messages=user(), max_tokens=100, extra_body={"foo_custom": 1}
    )

    seen = stack.anthropic.last
    assert seen["path"] == "/v1/messages"
    body = seen["body"]
    assert body["model"] == "claude-test-1"
    assert body["max_tokens"] == 100
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "What is the capital of France?" in json.dumps(body["messages"])
    assert "foo_custom" not in body  # Anthropic rejects unknown fields: the translation drops them
    headers = seen["headers"]
    assert headers["x-api-key"] == stack.keys["ANTHROPIC_KEY"]
    assert headers["anthropic-version"]
    assert "authorization" not in headers
    assert "rk-test" not in json.dumps(seen)


def test_fallback_provider_gets_its_own_key_not_the_first_ones(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=503)

    client.chat.completions.create(model="fast", messages=user())

    assert stack.a.last["headers"]["authorization"] == "Bearer " + stack.keys["OPENAI_KEY"]
    seen = stack.b.last
    assert seen["headers"]["authorization"] == "Bearer " + stack.keys["BACKUP_KEY"]
    assert seen["body"]["model"] == "gpt-b-mini"
    assert stack.keys["OPENAI_KEY"] not in json.dumps(seen)
    assert "rk-test" not in json.dumps(seen)


# ------------------------------------------------------------------------------------------ models


def test_models_list_has_auto_tiers_models_and_aliases(stack, client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]

    assert ids[0] == "auto"
    assert set(ids) == {"auto", "fast", "smart", "claude-only", "model-a", "model-b", "claude", "gpt-4o"}
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------------------- errors a client causes


def test_unknown_model_is_not_found_and_lists_valid_names(stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nonexistent", messages=user())

    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert "gpt-nonexistent" in caught.value.message
    assert "fast" in caught.value.message
    assert stack.a.requests == stack.b.requests == stack.anthropic.requests == 0


@pytest.mark.parametrize("api_key", ["wrong-key", "rk-tes", "rk-test-extra"])
def test_wrong_router_key_is_an_authentication_error(stack, api_key: str) -> None:
    with stack.sdk(api_key=api_key) as client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="auto", messages=user())

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert stack.a.requests == 0


def test_wrong_router_key_on_models_list(stack) -> None:
    with stack.sdk(api_key="wrong-key") as client, pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_provider_400_is_a_bad_request_and_not_retried(stack, client: openai.OpenAI) -> None:
    stack.a.control(
        mode="status",
        status=400,
        body={"error": {"message": "max_tokens is too large", "type": "invalid_request_error"}},
    )

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fast", messages=user())

    assert caught.value.status_code == 400
    assert "max_tokens is too large" in caught.value.message
    assert caught.value.response.headers["x-router-model"] == "model-a"
    assert stack.a.requests == 1
    assert stack.b.requests == 0


def test_provider_400_on_a_stream_is_a_bad_request_and_not_retried(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=400)

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="fast", messages=user(), stream=True)

    assert stack.a.requests == 1
    assert stack.b.requests == 0


def test_anthropic_untranslatable_request_is_a_bad_request(stack, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="claude-only", messages=user(), n=2)

    assert caught.value.status_code == 400
    assert stack.anthropic.requests == 0


@pytest.mark.parametrize("model", ["fast", "claude-only"])
def test_streamed_requests_reuse_the_upstream_connection(stack, client: openai.OpenAI, model: str) -> None:
    """A finished stream hands its connection back to the pool: without that, every streamed
    request pays a new TCP (and, to a real provider, TLS) handshake."""
    fake = stack.a if model == "fast" else stack.anthropic
    for i in range(4):
        chunks = list(client.chat.completions.create(model=model, messages=user(f"stream {i}"), stream=True))
        assert stream_text(chunks)
    ports = [r["client_port"] for r in fake.stats()["recent"][-4:]]
    assert len(ports) == 4
    assert len(set(ports)) == 1, f"a new upstream connection per stream: {ports}"
