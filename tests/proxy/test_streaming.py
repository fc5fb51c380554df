"""Streamed chat completions (openai kind): SSE pass-through, usage handling, hold-back until the
first content (fail over invisibly before it), and the error event after it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from tier_router.providers.base import MAX_BAD_CHUNKS

from tests.support.router_app import app_settings

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk.get("choices") or ()
    )


def split(payloads: list[str]) -> tuple[list[dict[str, Any]], bool]:
    """(chunks as dicts, whether the stream ended with [DONE]); [DONE] must only ever be last."""
    done = bool(payloads) and payloads[-1] == "[DONE]"
    body = payloads[:-1] if done else payloads
    assert "[DONE]" not in body
    return [json.loads(p) for p in body], done


# -- the happy path ------------------------------------------------------------------------------


async def test_stream_passes_chunks_and_done(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    upstream_chunks = openai_chunks(["Hel", "lo", " world"], usage=True)
    route = upstream.post(urls["openai"]).mock(
        return_value=sse_response(sse(upstream_chunks), headers={"x-request-id": "req-s-1"})
    )

    response = await router.post(CHAT, json=chat(stream=True, seed=3, foo_custom={"x": 1}))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-router-model"] == "primary"
    assert response.headers["x-router-provider"] == "openai-a"
    assert response.headers["x-router-attempts"] == "1"
    assert response.headers["x-router-tier"] == "fast"
    assert response.headers["x-request-id"] == "req-s-1"
    chunks, done = split(read_sse(response.text))
    assert done
    assert content_of(chunks) == "Hello world"
    assert all(chunk["model"] == "gpt-a-2025-06-01" for chunk in chunks)
    # Everything but the usage-only chunk, unchanged and in order.
    assert chunks == upstream_chunks[:-1]

    sent = json.loads(route.calls.last.request.content)
    assert sent["model"] == "gpt-a-2025"
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["seed"] == 3
    assert sent["foo_custom"] == {"x": 1}


async def test_usage_chunk_dropped_when_client_did_not_ask(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    upstream.post(urls["openai"]).mock(return_value=sse_response(sse(openai_chunks(usage=True))))

    response = await router.post(CHAT, json=chat(stream=True, stream_options={"include_usage": False}))

    chunks, done = split(read_sse(response.text))
    assert done
    assert all(chunk["choices"] for chunk in chunks)
    assert not any(chunk.get("usage") for chunk in chunks)


async def test_usage_chunk_kept_when_client_asked(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    upstream_chunks = openai_chunks(usage=True)
    route = upstream.post(urls["openai"]).mock(return_value=sse_response(sse(upstream_chunks)))

    body = chat(stream=True, stream_options={"include_usage": True, "include_obfuscation": False})
    response = await router.post(CHAT, json=body)

    chunks, done = split(read_sse(response.text))
    assert done
    assert chunks[:-1] == upstream_chunks[:-1]
    assert chunks[-1]["choices"] == []
    # the router prices the usage chunk: 5 input × $1 + 2 output × $4 per 1M tokens = 13 µ$
    assert chunks[-1]["usage"] == {**upstream_chunks[-1]["usage"], "cost_usd": 13e-6}
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream_options"] == {"include_usage": True, "include_obfuscation": False}


async def test_byte_chunks_split_anywhere_are_reassembled(
    router, upstream, urls, chat, openai_chunks, sse, read_sse, slow_stream
):
    body = sse(openai_chunks(["Split", " across", " reads"], usage=False))
    pieces = [(0.0, body[i : i + 7]) for i in range(0, len(body), 7)]  # cut mid-line, mid-JSON
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=slow_stream(pieces)
        )
    )

    response = await router.post(CHAT, json=chat(stream=True))

    chunks, done = split(read_sse(response.text))
    assert done
    assert content_of(chunks) == "Split across reads"


async def test_crlf_comments_and_event_names_are_tolerated(
    router, upstream, urls, chat, openai_chunks, read_sse
):
    chunks = openai_chunks(["ok"], usage=False)
    body = b": keep-alive comment\r\n\r\n"
    for chunk in chunks:
        body += b"event: message\r\nid: 1\r\ndata: " + json.dumps(chunk).encode() + b"\r\n\r\n"
    body += b"data: [DONE]\r\n\r\n"
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body
        )
    )

    response = await router.post(CHAT, json=chat(stream=True))

    got, done = split(read_sse(response.text))
    assert done
    assert content_of(got) == "ok"


async def test_complete_empty_answer_is_served(router, upstream, urls, chat, sse, sse_response, read_sse):
    model = "gpt-a-2025-06-01"
    role = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    }
    stop = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    upstream.post(urls["openai"]).mock(return_value=sse_response(sse([role, stop])))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(500))

    response = await router.post(CHAT, json=chat(stream=True))

    chunks, done = split(read_sse(response.text))
    assert done
    assert chunks == [role, stop]
    assert backup.call_count == 0


# -- hold-back: failures before content are invisible ---------------------------------------------


def first_candidate_failures(openai_chunks, sse):
    role_only = openai_chunks([], usage=False)[:1]
    return {
        "http_503": httpx.Response(503, json={"error": {"message": "overloaded"}}),
        "http_429": httpx.Response(429, headers={"retry-after": "60"}),
        "garbage_line": httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=sse([role_only[0], *["this is not json"] * (MAX_BAD_CHUNKS + 1)]),
        ),
        "error_event": httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=sse([role_only[0], {"error": {"message": "model overloaded"}}], done=False),
        ),
        "wrong_content_type": httpx.Response(
            200, headers={"content-type": "application/json"}, content=b'{"choices": []}'
        ),
        "ends_before_content": httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=sse(role_only, done=False)
        ),
        "empty_body": httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b""),
        "connect_error": httpx.ConnectError("refused"),
        "read_timeout": httpx.ReadTimeout("timed out"),
    }


@pytest.mark.parametrize(
    "failure",
    [
        "http_503",
        "http_429",
        "garbage_line",
        "error_event",
        "wrong_content_type",
        "ends_before_content",
        "empty_body",
        "connect_error",
        "read_timeout",
    ],
)
async def test_failure_before_content_serves_second_stream(
    failure, router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    bad = first_candidate_failures(openai_chunks, sse)[failure]
    primary = upstream.post(urls["openai"])
    if isinstance(bad, httpx.Response):
        primary.mock(return_value=bad)
    else:
        primary.mock(side_effect=bad)
    backup_chunks = openai_chunks(["from ", "backup"], model="gpt-b-mini-0001", usage=False)
    backup = upstream.post(urls["backup"]).mock(return_value=sse_response(sse(backup_chunks)))

    response = await router.post(CHAT, json=chat(stream=True))

    retried = failure == "http_503"  # retried once on the same model, still before any byte went out
    assert response.status_code == 200
    assert primary.call_count == (2 if retried else 1)
    assert backup.call_count == 1
    assert response.headers["x-router-model"] == "secondary"
    assert response.headers["x-router-attempts"] == ("3" if retried else "2")
    chunks, done = split(read_sse(response.text))
    assert done
    assert chunks == backup_chunks  # only the second's chunks: nothing of the first leaked out
    assert "error" not in response.text


@pytest.mark.parametrize("status", [302, 204])
async def test_stream_redirect_or_204_falls_back(
    status, router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    """As for buffered requests: a 3xx / non-200 2xx is not the client's fault; fail over."""
    headers = {"location": "https://login.openai.test/"} if status == 302 else {}
    primary = upstream.post(urls["openai"]).mock(return_value=httpx.Response(status, headers=headers))
    backup_chunks = openai_chunks(["backup"], model="gpt-b-mini-0001", usage=False)
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(backup_chunks)))

    response = await router.post(CHAT, json=chat(stream=True))

    assert primary.call_count == 1
    assert response.status_code == 200, response.text
    chunks, done = split(read_sse(response.text))
    assert done
    assert chunks == backup_chunks


@pytest.mark.parametrize("own", [False, True], ids=["provider-timeout", "model-override"])
async def test_first_token_timeout_moves_on(
    make_router,
    rules_dict,
    upstream,
    urls,
    chat,
    openai_chunks,
    sse,
    sse_response,
    read_sse,
    slow_stream,
    own,
):
    """`own`: issue 14, timeouts that fit the model — `models.<name>.timeouts` replaces the
    fields it gives of the provider's: a fast model's first_token of 0.2 s under a provider
    that allows 5 s (as a reasoning model of the same provider would need)."""
    if own:
        rules = rules_dict({"first_token": 5, "stall": 5})
        rules["models"]["primary"]["timeouts"] = {"first_token": 0.2}
        router = make_router(rules=rules)
    else:
        router = make_router(timeouts={"first_token": 0.2, "stall": 5})
    chunks = openai_chunks(["too late"], usage=False)
    slow = slow_stream([(0.0, sse(chunks[:1], done=False)), (2.0, sse(chunks[1:]))])
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=slow)
    )
    backup_chunks = openai_chunks(["quick"], model="gpt-b-mini-0001", usage=False)
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(backup_chunks)))

    started = time.perf_counter()
    response = await router.post(CHAT, json=chat(stream=True))
    elapsed = time.perf_counter() - started

    got, done = split(read_sse(response.text))
    assert done
    assert got == backup_chunks
    assert response.headers["x-router-attempts"] == "2"
    assert elapsed < 1.5  # 0.2 s, never the provider's 5 s
    assert slow.closed  # the abandoned upstream response was released


async def test_first_token_timeout_counts_a_slow_response_start(
    make_router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse, sleepy
):
    router = make_router(timeouts={"first_token": 0.2})
    slow = sleepy(2.0, httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b""))
    upstream.post(urls["openai"]).mock(side_effect=slow)
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(openai_chunks(["b"], usage=False))))

    response = await router.post(CHAT, json=chat(stream=True))

    got, done = split(read_sse(response.text))
    assert done
    assert content_of(got) == "b"
    assert len(slow.started) == 1


# -- failures after content: error event, no [DONE] ------------------------------------------------


def assert_interrupted(payloads: list[str]) -> dict[str, Any]:
    assert payloads, "empty stream"
    assert "[DONE]" not in payloads
    last = json.loads(payloads[-1])
    assert set(last) == {"error"}
    error = last["error"]
    assert error["code"] == "stream_interrupted"
    assert set(error) == {"message", "type", "param", "code"}
    message = error["message"]
    reason = message.partition("failed after it started:")[2].strip()
    assert reason, f"no reason given: {message!r}"
    return error


async def test_stream_ending_without_done_after_content_gets_error_event(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    upstream_chunks = openai_chunks(["partial ", "answer"], usage=False)[:-1]  # no finish, no [DONE]
    upstream.post(urls["openai"]).mock(return_value=sse_response(sse(upstream_chunks, done=False)))
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(504))

    response = await router.post(CHAT, json=chat(stream=True))

    assert response.status_code == 200
    payloads = read_sse(response.text)
    assert_interrupted(payloads)
    delivered = [json.loads(p) for p in payloads[:-1]]
    assert delivered == upstream_chunks
    assert (
        backup.call_count == 1
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays


async def test_garbage_mid_stream_gets_error_event(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    good = openai_chunks(["some ", "text"], usage=False)
    body = sse([*good[:2], *["{broken json"] * (MAX_BAD_CHUNKS + 1), *good[2:]])  # one is skipped
    upstream.post(urls["openai"]).mock(return_value=sse_response(body))

    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(500)
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays

    response = await router.post(CHAT, json=chat(stream=True))

    payloads = read_sse(response.text)
    assert_interrupted(payloads)
    assert content_of([json.loads(p) for p in payloads[:-1]]) == "some "


async def test_provider_error_event_mid_stream_gets_error_event(
    router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    good = openai_chunks(["some"], usage=False)
    body = sse([*good[:2], {"error": {"message": "server overloaded mid-answer"}}], done=False)
    upstream.post(urls["openai"]).mock(return_value=sse_response(body))

    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(500)
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays

    response = await router.post(CHAT, json=chat(stream=True))

    error = assert_interrupted(read_sse(response.text))
    assert "server overloaded mid-answer" in error["message"]


async def test_connection_drop_mid_stream_gets_error_event(
    router, upstream, urls, chat, openai_chunks, sse, read_sse
):
    good = openai_chunks(["half"], usage=False)

    class Dropping(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield sse(good[:2], done=False)
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Dropping())
    )

    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(500)
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays

    response = await router.post(CHAT, json=chat(stream=True))

    payloads = read_sse(response.text)
    assert_interrupted(payloads)
    assert content_of([json.loads(p) for p in payloads[:-1]]) == "half"


async def test_stall_mid_stream_gets_error_event(
    make_router, upstream, urls, chat, openai_chunks, sse, read_sse, slow_stream
):
    router = make_router(timeouts={"first_token": 5, "stall": 0.2})
    chunks = openai_chunks(["fast ", "then stuck"], usage=False)
    slow = slow_stream([(0.0, sse(chunks[:2], done=False)), (3.0, sse(chunks[2:]))])
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=slow)
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(504))

    started = time.perf_counter()
    response = await router.post(CHAT, json=chat(stream=True))
    elapsed = time.perf_counter() - started

    payloads = read_sse(response.text)
    error = assert_interrupted(payloads)
    assert "sent nothing for 0.2 s (its stall limit)" in error["message"]
    assert content_of([json.loads(p) for p in payloads[:-1]]) == "fast "
    assert elapsed < 2.0
    assert (
        backup.call_count == 1
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays
    assert slow.closed


async def test_a_line_past_the_sse_limit_mid_stream_gets_error_event(
    make_router, upstream, urls, chat, openai_chunks, sse, read_sse, slow_stream
):
    router = make_router(settings=app_settings(max_sse_line_bytes=64 * 1024))
    good = openai_chunks(["before "], usage=False)
    huge = [(0.0, b"x" * 8192) for _ in range(25)]  # one 200 KiB line, in network-sized reads
    reads = [(0.0, sse(good[:2], done=False)), (0.0, b"data: "), *huge, (0.0, b"\n\n" + sse(good[2:]))]
    stream = slow_stream(reads)
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(504))

    response = await router.post(CHAT, json=chat(stream=True))

    payloads = read_sse(response.text)
    error = assert_interrupted(payloads)
    assert "longer than the limit of 65536 bytes" in error["message"]
    assert content_of([json.loads(p) for p in payloads[:-1]]) == "before "
    assert (
        backup.call_count == 1
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays


async def test_a_line_past_the_sse_limit_before_content_fails_over(
    make_router, upstream, urls, chat, openai_chunks, sse, sse_response, read_sse
):
    router = make_router(settings=app_settings(max_sse_line_bytes=64 * 1024))
    huge = b"data: " + b"x" * (200 * 1024) + b"\n\n"
    upstream.post(urls["openai"]).mock(return_value=sse_response(huge))
    upstream.post(urls["backup"]).mock(return_value=sse_response(sse(openai_chunks(["b"], usage=False))))

    response = await router.post(CHAT, json=chat(stream=True))

    got, done = split(read_sse(response.text))
    assert done
    assert content_of(got) == "b"
    assert response.headers["x-router-attempts"] == "2"


# -- streams that never open ---------------------------------------------------------------------------


async def test_stream_all_fail_is_json_502(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(503))
    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"data: nope\n\n"
        )
    )

    response = await router.post(CHAT, json=chat(stream=True))

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "primary" in error["message"]
    assert "secondary" in error["message"]


async def test_stream_all_first_token_timeouts_is_504(
    make_router, upstream, urls, chat, openai_chunks, sse, slow_stream
):
    router = make_router(timeouts={"first_token": 0.2})
    for url in (urls["openai"], urls["backup"]):
        upstream.post(url).mock(
            return_value=httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=slow_stream([(2.0, sse(openai_chunks(usage=False)))]),
            )
        )

    response = await router.post(CHAT, json=chat(stream=True))

    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


async def test_stream_client_error_is_returned_as_json(router, upstream, urls, chat):
    upstream.post(urls["openai"]).mock(
        return_value=httpx.Response(400, json={"error": {"message": "stream_options only with stream"}})
    )
    backup = upstream.post(urls["backup"]).mock(return_value=httpx.Response(500))

    response = await router.post(CHAT, json=chat(stream=True))

    assert response.status_code == 400
    assert response.json()["error"]["message"] == "stream_options only with stream"
    assert backup.call_count == 0


# -- secrets ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("sk-test-openai-SECRET123", id="key_shaped"),
        pytest.param("gw-plain-SECRETVALUE-987", id="not_key_shaped"),
    ],
)
async def test_keys_never_leak_from_a_mid_stream_error(
    secret, make_router, upstream, urls, chat, keys, openai_chunks, sse, sse_response, read_sse, caplog
):
    caplog.set_level("DEBUG")
    caplog.set_level("DEBUG", logger="tier_router")
    caplog.set_level("DEBUG", logger="httpx")
    keys["OPENAI_KEY"] = secret
    router = make_router(keys=keys)
    good = openai_chunks(["hi"], usage=False)
    body = sse([*good[:2], {"error": {"message": f"key {secret} was revoked mid-stream"}}], done=False)
    upstream.post(urls["openai"]).mock(return_value=sse_response(body))

    upstream.post(urls["backup"]).mock(
        return_value=httpx.Response(500)
    )  # asked to finish the answer (issue 14 recovery): it fails, the error event stays

    response = await router.post(CHAT, json=chat(stream=True))

    error = assert_interrupted(read_sse(response.text))
    assert "revoked mid-stream" in error["message"]
    visible = [response.text, *(f"{k}: {v}" for k, v in response.headers.multi_items())]
    visible += [record.getMessage() for record in caplog.records]
    assert secret not in "\n".join(visible)


def test_stream_timeouts_default_to_replacing_a_stuck_model_within_ten_seconds() -> None:
    from tier_router.schema import Timeouts

    defaults = Timeouts()
    assert (defaults.first_token, defaults.stall) == (10.0, 10.0)
