"""The `anthropic` provider kind end to end: the OpenAI request goes out as a Messages API call,
the answer (buffered or streamed) comes back as OpenAI's shapes, and Anthropic's errors are
classified (overload → next candidate, invalid request → the client)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
SSE = {"content-type": "text/event-stream"}

MESSAGE: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-test-1-20250514",
    "content": [{"type": "text", "text": "Hello! Paris is the capital of France."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 12,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1800,
        "output_tokens": 14,
    },
}

TOOL_MESSAGE: dict[str, Any] = {
    "id": "msg_019Q1hrJbZG26Fb9BQhrkHEr",
    "type": "message",
    "role": "assistant",
    "model": "claude-test-1-20250514",
    "content": [
        {"type": "text", "text": "Checking."},
        {
            "type": "tool_use",
            "id": "toolu_weather",
            "name": "get_weather",
            "input": {"location": "Paris, France", "unit": "celsius"},
        },
        {"type": "tool_use", "id": "toolu_time", "name": "get_time", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 472, "output_tokens": 89},
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a place",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["location"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_0123"}


def event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def message_start(message_id: str = "msg_stream01") -> bytes:
    return event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": "claude-test-1-20250514",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 20, "cache_read_input_tokens": 0, "output_tokens": 1},
            },
        },
    )


def text_block(index: int, *pieces: str) -> bytes:
    out = event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
    )
    out += event("ping", {"type": "ping"})
    for piece in pieces:
        out += event(
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}},
        )
    return out + event("content_block_stop", {"type": "content_block_stop", "index": index})


def tool_block(index: int, call_id: str, name: str, *fragments: str) -> bytes:
    out = event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
        },
    )
    for fragment in fragments:
        out += event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": fragment},
            },
        )
    return out + event("content_block_stop", {"type": "content_block_stop", "index": index})


def message_end(stop_reason: str = "end_turn", output_tokens: int = 9) -> bytes:
    return event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    ) + event("message_stop", {"type": "message_stop"})


def stream_chunks(text: str, read_sse) -> tuple[list[dict[str, Any]], bool]:
    payloads = read_sse(text)
    done = bool(payloads) and payloads[-1] == "[DONE]"
    body = payloads[:-1] if done else payloads
    assert "[DONE]" not in body
    return [json.loads(p) for p in body], done


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk.get("choices") or ())


# -- buffered ----------------------------------------------------------------------------------


async def test_request_is_translated_to_messages_api(router, upstream, urls, keys):
    route = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    body = {
        "model": "claude-only",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "temperature": 0.5,
        "stop": ["\n\n"],
        "seed": 1,
    }

    response = await router.post(CHAT, json=body)

    assert response.status_code == 200, response.text
    assert route.call_count == 1
    sent = route.calls.last.request
    assert str(sent.url) == "https://anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == keys["ANTHROPIC_KEY"]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    payload = json.loads(sent.content)
    assert payload["model"] == "claude-test-1"
    assert payload["system"] == "You are terse."
    assert [m["role"] for m in payload["messages"]] == ["user"]  # the system turn was hoisted
    assert payload["messages"][0]["content"] == [{"type": "text", "text": "Capital of France?"}]
    assert payload["max_tokens"] == 2048  # the default, capped by the model's max_output
    assert payload["temperature"] == 0.5
    assert payload["stop_sequences"] == ["\n\n"]
    assert "seed" not in payload
    assert "stream" not in payload


async def test_client_max_tokens_wins_over_default(router, upstream, urls):
    route = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    body = {
        "model": "claude-only",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 77,
    }
    response = await router.post(CHAT, json=body)
    assert response.status_code == 200
    assert json.loads(route.calls.last.request.content)["max_tokens"] == 77


async def test_response_is_an_openai_chat_completion(router, upstream, urls, chat):
    upstream.post(urls["anthropic"]).mock(
        return_value=httpx.Response(
            200,
            json=MESSAGE,
            headers={"request-id": "req_anthropic_1", "anthropic-ratelimit-requests-remaining": "41"},
        )
    )

    response = await router.post(CHAT, json=chat("Capital of France?", model="claude-only"))

    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"] == "chatcmpl-01XFDUDYJgAACzvnptvVoYEL"
    assert data["model"] == "claude-test-1-20250514"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Hello! Paris is the capital of France."
    assert choice["finish_reason"] == "stop"
    usage = data["usage"]
    assert usage["prompt_tokens"] == 1812
    assert usage["completion_tokens"] == 14
    assert usage["total_tokens"] == 1826
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1800
    assert response.headers["x-router-provider"] == "anthropic"
    assert response.headers["x-router-model"] == "claude"
    assert response.headers["x-request-id"] == "req_anthropic_1"
    assert response.headers["anthropic-ratelimit-requests-remaining"] == "41"


async def test_rule_routes_to_anthropic(router, upstream, urls, chat):
    anthropic = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    response = await router.post(CHAT, json=chat("Prove that there are infinitely many primes"))
    assert response.status_code == 200
    assert anthropic.call_count == 1
    assert response.headers["x-router-rule"] == "needs-thinking"
    assert response.headers["x-router-tier"] == "smart"


async def test_tools_and_tool_calls_are_translated(router, upstream, urls, chat):
    route = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=TOOL_MESSAGE))

    response = await router.post(
        CHAT,
        json=chat("Weather and time in Paris?", model="claude-only", tools=TOOLS, tool_choice="required"),
    )

    assert response.status_code == 200
    sent = json.loads(route.calls.last.request.content)
    assert sent["tools"][0] == {
        "name": "get_weather",
        "description": "Weather for a place",
        "input_schema": TOOLS[0]["function"]["parameters"],
    }
    assert sent["tools"][1]["name"] == "get_time"
    assert sent["tool_choice"] == {"type": "any"}
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_weather", "toolu_time"]
    assert all(c["type"] == "function" for c in calls)
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"location": "Paris, France", "unit": "celsius"}
    assert json.loads(calls[1]["function"]["arguments"]) == {}


async def test_tool_results_go_back_as_tool_result_blocks(router, upstream, urls):
    route = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    body = {
        "model": "claude-only",
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_weather",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_weather", "content": "18C and sunny"},
        ],
    }

    response = await router.post(CHAT, json=body)

    assert response.status_code == 200, response.text
    messages = json.loads(route.calls.last.request.content)["messages"]
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"][0]["type"] == "tool_use"
    assert messages[1]["content"][0]["input"] == {"location": "Paris"}
    assert messages[2]["role"] == "user"
    assert messages[2]["content"][0]["type"] == "tool_result"
    assert messages[2]["content"][0]["tool_use_id"] == "toolu_weather"


# -- errors and fallback --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [(529, "overloaded_error"), (500, "api_error"), (429, "rate_limit_error"), (401, "authentication_error")],
)
async def test_anthropic_outage_falls_back(status, kind, router, upstream, urls, chat, completion):
    anthropic = upstream.post(urls["anthropic"]).mock(
        return_value=httpx.Response(status, json=anthropic_error(kind, "Overloaded"))
    )
    backup = upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(200, json=completion("backup answer", model="gpt-b-mini-0001"))
    )

    response = await router.post(CHAT, json=chat("Prove it", model="smart"))

    retried = status == 500  # a first 500 is retried once; 529, 429 without retry-after, 401 are not
    assert response.status_code == 200
    assert anthropic.call_count == (2 if retried else 1)
    assert backup.call_count == 1
    assert response.json()["choices"][0]["message"]["content"] == "backup answer"
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-attempts"] == ("3" if retried else "2")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"type": "error", "error": {"type": "api_error", "message": "x"}}, id="error_body_200"),
        pytest.param({"id": "msg_1", "type": "message", "content": "not a list"}, id="content_not_list"),
        pytest.param({"hello": "world"}, id="not_a_message"),
    ],
)
async def test_invalid_anthropic_answer_falls_back(bad, router, upstream, urls, chat, completion):
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=bad))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("ok")))

    response = await router.post(CHAT, json=chat(model="smart"))

    assert response.status_code == 200
    assert backup.call_count == 1
    assert response.headers["x-router-model"] == "secondary"


async def test_anthropic_400_is_returned_with_its_message(router, upstream, urls, chat):
    message = 'messages: roles must alternate between "user" and "assistant"'
    anthropic = upstream.post(urls["anthropic"]).mock(
        return_value=httpx.Response(400, json=anthropic_error("invalid_request_error", message))
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(500))

    response = await router.post(CHAT, json=chat(model="smart"))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == message
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert anthropic.call_count == 1
    assert backup.call_count == 0
    assert response.headers["x-router-provider"] == "anthropic"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"n": 2}, id="n"),
        pytest.param({"logprobs": True}, id="logprobs"),
        pytest.param({"tools": [{"type": "web_search"}]}, id="non_function_tool"),
    ],
)
async def test_request_anthropic_cannot_express_is_400(extra, router, upstream, urls, chat):
    anthropic = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))

    response = await router.post(CHAT, json=chat(model="claude-only", **extra))

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert anthropic.call_count == 0
    assert len(upstream.calls) == 0


async def test_request_anthropic_cannot_express_goes_to_a_candidate_that_can(
    router, upstream, urls, chat, completion
):
    anthropic = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("two")))

    response = await router.post(CHAT, json=chat(model="smart", n=2))

    assert response.status_code == 200
    assert anthropic.call_count == 0
    assert backup.call_count == 1
    assert json.loads(backup.calls.last.request.content)["n"] == 2
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-attempts"] == "1"


async def test_missing_anthropic_key_skips_to_next(make_router, upstream, urls, chat, completion, keys):
    del keys["ANTHROPIC_KEY"]
    router = make_router(keys=keys)
    anthropic = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, json=MESSAGE))
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(200, json=completion("backup")))

    response = await router.post(CHAT, json=chat(model="smart"))

    assert response.status_code == 200
    assert anthropic.call_count == 0
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-attempts"] == "1"


# -- streaming ------------------------------------------------------------------------------------


async def test_stream_is_translated_to_openai_chunks(router, upstream, urls, chat, read_sse):
    body = message_start() + text_block(0, "Hello", " from", " Claude") + message_end()
    route = upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))

    response = await router.post(CHAT, json=chat(model="smart", stream=True))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert json.loads(route.calls.last.request.content)["stream"] is True
    chunks, done = stream_chunks(response.text, read_sse)
    assert done
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["id"] == "chatcmpl-stream01" for c in chunks)
    assert all(c["model"] == "claude-test-1-20250514" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == "Hello from Claude"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    assert not any(c.get("usage") for c in chunks)


async def test_stream_usage_when_client_asked(router, upstream, urls, chat, read_sse):
    body = message_start() + text_block(0, "Hi") + message_end(output_tokens=9)
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))

    response = await router.post(
        CHAT, json=chat(model="claude-only", stream=True, stream_options={"include_usage": True})
    )

    chunks, done = stream_chunks(response.text, read_sse)
    assert done
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 20
    assert chunks[-1]["usage"]["completion_tokens"] == 9


async def test_stream_tool_calls_are_translated(router, upstream, urls, chat, read_sse):
    body = (
        message_start()
        + tool_block(0, "toolu_weather", "get_weather", '{"locat', 'ion": "Par', 'is"}')
        + tool_block(1, "toolu_time", "get_time")
        + message_end("tool_use")
    )
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))

    response = await router.post(CHAT, json=chat(model="claude-only", stream=True, tools=TOOLS))

    chunks, done = stream_chunks(response.text, read_sse)
    assert done
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                entry = calls.setdefault(call["index"], {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.get("id") or ""
                entry["name"] += (call.get("function") or {}).get("name") or ""
                entry["arguments"] += (call.get("function") or {}).get("arguments") or ""
    assert calls[0]["id"] == "toolu_weather"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert calls[1]["name"] == "get_time"
    assert json.loads(calls[1]["arguments"]) == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_stream_529_falls_back_to_openai_stream(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    upstream.post(urls["anthropic"]).mock(
        return_value=httpx.Response(529, json=anthropic_error("overloaded_error", "Overloaded"))
    )
    backup_chunks = openai_chunks(["backup ", "stream"], model="gpt-b-mini-0001", usage=False)
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(backup_chunks)))

    response = await router.post(CHAT, json=chat(model="smart", stream=True))

    chunks, done = stream_chunks(response.text, read_sse)
    assert done
    assert chunks == backup_chunks
    assert response.headers["x-router-model"] == "secondary"


async def test_stream_error_event_before_content_falls_back(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    body = message_start() + event(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))
    backup_chunks = openai_chunks(["fine"], model="gpt-b-mini-0001", usage=False)
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(backup_chunks)))

    response = await router.post(CHAT, json=chat(model="smart", stream=True))

    chunks, done = stream_chunks(response.text, read_sse)
    assert done
    assert chunks == backup_chunks  # the held-back message_start chunk never reached the client


async def test_stream_error_event_after_content_interrupts(router, upstream, urls, chat, read_sse):
    body = (
        message_start()
        + text_block(0, "Once upon")[
            : -len(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        ]
        + event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    )
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(504))

    response = await router.post(CHAT, json=chat(model="smart", stream=True))

    payloads = read_sse(response.text)
    assert "[DONE]" not in payloads
    last = json.loads(payloads[-1])
    assert last["error"]["code"] == "stream_interrupted"
    assert "Overloaded" in last["error"]["message"]
    assert text_of([json.loads(p) for p in payloads[:-1]]) == "Once upon"
    assert (
        backup.call_count == 1
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays


async def test_stream_without_message_stop_interrupts(router, upstream, urls, chat, read_sse):
    body = message_start() + text_block(0, "cut")  # no message_delta / message_stop; no next candidate
    upstream.post(urls["anthropic"]).mock(return_value=httpx.Response(200, headers=SSE, content=body))

    response = await router.post(CHAT, json=chat(model="claude-only", stream=True))

    payloads = read_sse(response.text)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "stream_interrupted"
