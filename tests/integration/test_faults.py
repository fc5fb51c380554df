"""Provider failures, produced on demand by the fakes, as the OpenAI SDK sees them through the router.

Before content (or on a whole answer) a failing provider is replaced by the next candidate without
the client noticing; after content has been streamed, the stream ends with an error event and no
[DONE] (the SDK raises). When every candidate fails, the SDK gets the matching error class.
Timeouts are the small ones from the conftest (total 2 s, first_token 1.5 s, stall 0.5 s).
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import openai
import pytest

pytestmark = pytest.mark.integration

TOTAL_S = 2.0
FIRST_TOKEN_S = 1.5
STALL_S = 0.5
SLACK_S = 1.5  # scheduling headroom on a loaded machine


def user(text: str = "What is the capital of France?") -> Any:
    return [{"role": "user", "content": text}]


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def raw_stream(stack: Any, **body: Any) -> httpx.Response:
    """POST a streamed chat request with plain httpx and read the whole body (to see the wire)."""
    payload = {"model": "fast", "messages": user(), "stream": True, **body}
    response = stack.http.post(
        stack.router_url + "/v1/chat/completions",
        json=payload,
        headers={"authorization": "Bearer " + stack.router_key},
        timeout=10.0,
    )
    return response


def drain(stream: Any, into: list[Any]) -> None:
    """Iterate a stream to its end, keeping every chunk received before an error is raised."""
    for chunk in stream:
        into.append(chunk)  # one by one: keep what arrived before a later chunk raises


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


# ------------------------------------------------------------------- whole answers: fall back to B


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"mode": "status", "status": 503}, id="503"),
        pytest.param({"mode": "status", "status": 500, "body": "upstream exploded"}, id="500-text"),
        pytest.param({"mode": "status", "status": 401}, id="401-operator-misconfig"),
        pytest.param({"mode": "reset"}, id="reset"),
        pytest.param({"mode": "bad_json"}, id="bad_json"),
        pytest.param({"mode": "wrong_content_type"}, id="wrong_content_type"),
        pytest.param({"mode": "stream_cut"}, id="body-cut"),
    ],
)
def test_failing_first_provider_falls_back_to_second(stack, client: openai.OpenAI, faults) -> None:
    stack.a.control(**faults)

    raw = client.chat.completions.with_raw_response.create(model="auto", messages=user())
    reply = raw.parse()

    assert reply.model == "gpt-b-mini"
    assert "Hello from fake-b" in (reply.choices[0].message.content or "")
    assert reply.usage is not None
    retried = faults.get("status") in (500, 503)  # a first 500/502/503 is retried once on model-a
    assert raw.headers["x-router-attempts"] == ("3" if retried else "2")
    assert raw.headers["x-router-model"] == "model-b"
    assert raw.headers["x-router-provider"] == "openai-b"
    assert raw.headers["x-router-tier"] == "fast"
    assert stack.a.requests == (2 if retried else 1)
    assert stack.b.requests == 1


def test_timeout_falls_back_within_the_configured_timeout(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="timeout", delay_s=30)

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=user())
    elapsed = time.monotonic() - started

    assert raw.parse().model == "gpt-b-mini"
    assert raw.headers["x-router-attempts"] == "2"
    assert TOTAL_S - 0.2 <= elapsed < TOTAL_S + SLACK_S
    # The router hung up on A: the fake saw the disconnect and is not left holding the request.
    stats = stack.a.wait_for(lambda s: s["in_flight"] == 0 and s["disconnects"] >= 1)
    assert stats["in_flight"] == 0
    assert stats["disconnects"] >= 1


def test_rate_limited_first_provider_is_not_waited_on(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=429, headers={"retry-after": "60"})

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=user())
    elapsed = time.monotonic() - started

    assert raw.parse().model == "gpt-b-mini"
    assert raw.headers["x-router-attempts"] == "2"
    assert elapsed < 5.0  # nowhere near the 60 s retry-after


def test_anthropic_overloaded_falls_back_to_openai_kind(stack, client: openai.OpenAI) -> None:
    stack.anthropic.control(mode="status", status=529)

    raw = client.chat.completions.with_raw_response.create(model="smart", messages=user())

    assert raw.parse().model == "gpt-b-mini"
    assert raw.headers["x-router-model"] == "model-b"
    assert raw.headers["x-router-attempts"] == "2"
    assert stack.anthropic.requests == 1


@pytest.mark.anyio
async def test_async_client_sees_fallback_under_concurrency(stack) -> None:
    """Every other request to A fails, four times; 8 concurrent requests all get A's answer,
    the 4 that failed after a same-model retry. (4 failures stay under the breaker threshold,
    so A keeps being tried.)"""
    assert stack.breaker_threshold > 4
    stack.a.control(mode="status", status=503, every=2, times=4)
    results: list[Any] = []

    async with stack.async_sdk() as client:

        async def one(i: int) -> None:
            raw = await client.chat.completions.with_raw_response.create(
                model="fast", messages=user(f"question {i}")
            )
            results.append((raw.headers["x-router-attempts"], raw.parse()))

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)

    assert len(results) == 8
    assert {reply.model for _, reply in results} == {"gpt-a-2025"}
    assert sorted(attempts for attempts, _ in results) == ["1"] * 4 + ["2"] * 4
    assert stack.a.requests == 12
    assert stack.b.requests == 0


def test_breaker_opens_after_repeated_failures_and_skips_the_provider(stack, client) -> None:
    stack.a.control(mode="status", status=503)
    threshold = stack.breaker_threshold
    # Each request's 503 is retried once and both failures count: the breaker opens after half
    # as many requests (the retry within the request that opened it still goes out).
    requests = (threshold + 1) // 2

    for _ in range(requests):
        raw = client.chat.completions.with_raw_response.create(model="fast", messages=user())
        assert raw.headers["x-router-attempts"] == "3"
    assert stack.a.requests == 2 * requests

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="fast", messages=user())
    elapsed = time.monotonic() - started

    # A's breaker is open: A is not even called, B answers first time, quickly.
    assert raw.parse().model == "gpt-b-mini"
    assert raw.headers["x-router-model"] == "model-b"
    assert raw.headers["x-router-attempts"] == "1"
    assert stack.a.requests == 2 * requests
    assert stack.b.requests == requests + 1
    assert elapsed < 2.0


# ------------------------------------------------------------------------ streams: before content


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"mode": "status", "status": 503}, id="503"),
        pytest.param({"mode": "reset"}, id="reset"),
        pytest.param({"mode": "wrong_content_type"}, id="wrong_content_type"),
        pytest.param({"mode": "stream_cut", "after_events": 1}, id="cut-after-role"),
        pytest.param({"mode": "stream_stall", "after_events": 1, "delay_s": 30}, id="stall-after-role"),
        pytest.param({"mode": "timeout", "delay_s": 30}, id="no-headers"),
    ],
)
def test_stream_failing_before_content_is_replaced_by_second(stack, client: openai.OpenAI, faults) -> None:
    stack.a.control(**faults)

    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=user(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    elapsed = time.monotonic() - started

    # Only B's stream reached the client: B's model on every chunk, B's text, one role chunk.
    retried = faults.get("status") == 503  # retried once on A, before anything was sent
    assert raw.headers["x-router-attempts"] == ("3" if retried else "2")
    assert raw.headers["x-router-model"] == "model-b"
    assert {c.model for c in chunks} == {"gpt-b-mini"}
    text = stream_text(chunks)
    assert text.startswith("Hello from fake-b")
    assert "fake-a" not in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.role]) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert elapsed < FIRST_TOKEN_S + SLACK_S
    assert stack.a.requests == (2 if retried else 1)
    assert stack.b.requests == 1


@pytest.mark.parametrize(("tier", "model"), [("fast", "gpt-a-2025"), ("claude-only", "claude-test-1")])
def test_one_garbage_chunk_is_skipped_not_failed_over(
    stack, client: openai.OpenAI, tier: str, model: str
) -> None:
    """Issue 14: one torn chunk no longer costs the answer (it used to fail over, or fail): it is
    skipped, and the first candidate's answer is served, whole."""
    fake = stack.a if tier == "fast" else stack.anthropic
    fake.control(mode="stream_garbage", after_events=1)

    chunks = list(client.chat.completions.create(model=tier, messages=user(), stream=True))

    assert {c.model for c in chunks} == {model}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert stream_text(chunks).startswith("Hello from ")
    assert fake.requests == 1


# ------------------------------------------------------------------------- streams: after content


def test_stream_cut_after_content_raises_in_the_sdk(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="stream_cut", after_events=3)  # role + two text pieces, then the TCP close
    stack.b.control(
        mode="status", status=504
    )  # asked to finish the answer (issue 14 recovery): fails, not retried

    stream = client.chat.completions.create(model="fast", messages=user(), stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        drain(stream, into=received)

    assert stream_text(received) == "Hello from "  # the first two pieces, nothing invented
    assert {c.model for c in received} == {"gpt-a-2025"}
    assert "stream" in caught.value.message.lower()
    assert caught.value.code == "stream_interrupted"
    assert stack.b.requests == 1  # content was sent: B was only asked to continue it


def test_stream_cut_after_content_wire_has_error_event_and_no_done(stack) -> None:
    stack.a.control(mode="stream_cut", after_events=3)
    stack.b.control(
        mode="status", status=504
    )  # asked to finish the answer (issue 14 recovery): fails, not retried

    response = raw_stream(stack)

    assert response.status_code == 200
    events = sse_data(response.text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] == "stream_interrupted"
    assert last["error"]["type"] == "upstream_error"
    assert "SECRET" not in response.text
    content = [json.loads(e) for e in events[:-1]]
    assert all("error" not in c for c in content)


def test_drip_slower_than_stall_after_content_ends_with_error(stack, client: openai.OpenAI) -> None:
    # First content after one gap (0.9 s < first_token 1.5 s), then the next gap exceeds stall (0.5 s).
    stack.a.control(mode="drip", drip_ms=900)
    stack.b.control(
        mode="status", status=504
    )  # asked to finish the answer (issue 14 recovery): fails, not retried

    started = time.monotonic()
    stream = client.chat.completions.create(model="fast", messages=user(), stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        drain(stream, into=received)
    elapsed = time.monotonic() - started

    assert stream_text(received) == "Hello "
    assert caught.value.code == "stream_interrupted"
    assert elapsed < 0.9 + STALL_S + SLACK_S
    assert stack.b.requests == 1  # content was sent: B was only asked to continue it
    stats = stack.a.wait_for(lambda s: s["in_flight"] == 0)
    assert stats["in_flight"] == 0


def test_drip_within_stall_completes(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="drip", drip_ms=20)

    chunks = list(client.chat.completions.create(model="fast", messages=user("slow but steady"), stream=True))

    assert stream_text(chunks).startswith("Hello from fake-a")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


# --------------------------------------------------------------------------- every candidate fails


def test_all_candidates_5xx_is_internal_server_error_naming_both(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=503)
    stack.b.control(mode="status", status=503)

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fast", messages=user())

    error = caught.value
    assert error.status_code == 502
    assert error.code == "upstream_error"
    assert "model-a" in error.message
    assert "model-b" in error.message
    assert "http_503" in error.message
    assert error.response.headers["x-router-attempts"] == "4"  # each retried once
    assert "SECRET" not in error.response.text
    assert "rk-test" not in error.response.text


def test_all_candidates_5xx_on_a_stream_is_a_json_error(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=500)
    stack.b.control(mode="reset")

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fast", messages=user(), stream=True)

    assert caught.value.status_code == 502
    assert "model-a" in caught.value.message
    assert "model-b" in caught.value.message


def test_all_candidates_rate_limited_is_rate_limit_error(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=429, headers={"retry-after": "60"})
    stack.b.control(mode="status", status=429, headers={"retry-after": "30"})

    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fast", messages=user())
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 429
    assert caught.value.code == "upstream_rate_limited"
    assert caught.value.response.headers["retry-after"] == "30"  # the soonest a candidate frees up
    assert elapsed < 5.0


@pytest.mark.anyio
async def test_async_client_all_failed_error(stack) -> None:
    stack.a.control(mode="bad_json")
    stack.b.control(mode="status", status=502)

    async with stack.async_sdk() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="fast", messages=user())

    assert caught.value.status_code == 502
    assert "invalid_response" in caught.value.message
    assert "http_502" in caught.value.message


# --------------------------------------------------------------------------- the client hangs up


def test_client_disconnect_mid_stream_closes_the_upstream_stream(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="drip", drip_ms=150)  # ~20 events: a few seconds if nobody hangs up

    stream = client.chat.completions.create(model="fast", messages=user(), stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    assert stack.a.stats()["in_flight"] == 1
    stream.close()

    stats = stack.a.wait_for(lambda s: s["disconnects"] >= 1 and s["in_flight"] == 0, timeout_s=2.0)
    assert stats["disconnects"] == 1
    assert stats["in_flight"] == 0
    assert stats["outcomes"] == {"drip": 1}


@pytest.mark.anyio
async def test_async_client_disconnect_mid_stream_closes_the_upstream_stream(stack) -> None:
    stack.anthropic.control(mode="drip", drip_ms=150)

    async with stack.async_sdk() as client:
        stream = await client.chat.completions.create(model="claude-only", messages=user(), stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()

    with anyio.fail_after(5):
        stats = await anyio.to_thread.run_sync(
            lambda: stack.anthropic.wait_for(lambda s: s["disconnects"] >= 1 and s["in_flight"] == 0, 2.0)
        )
    assert stats["disconnects"] == 1
    assert stats["in_flight"] == 0


# ------------------------------------------------------------------------------------- more edges


def test_all_candidates_time_out_on_a_stream_is_504(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="stream_stall", after_events=1, delay_s=30)
    stack.b.control(mode="timeout", delay_s=30)

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fast", messages=user(), stream=True)
    elapsed = time.monotonic() - started

    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    assert elapsed < 2 * FIRST_TOKEN_S + SLACK_S


def test_all_rate_limited_on_a_stream_is_rate_limit_error(stack, client: openai.OpenAI) -> None:
    stack.a.control(mode="status", status=429, headers={"retry-after": "60"})
    stack.b.control(mode="status", status=429)

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fast", messages=user(), stream=True)

    assert caught.value.response.headers["retry-after"] == "60"


def test_provider_error_echoing_its_key_never_reaches_the_client(stack, client: openai.OpenAI) -> None:
    a_key, b_key = stack.keys["OPENAI_KEY"], stack.keys["BACKUP_KEY"]
    stack.a.control(mode="status", status=401, body={"error": {"message": f"Incorrect API key: {a_key}"}})
    stack.b.control(mode="status", status=500, body={"error": {"message": f"key {b_key} is broken"}})

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="fast", messages=user())

    text = caught.value.response.text
    assert "http_401" in text
    assert a_key not in text
    assert b_key not in text
    assert "SECRET" not in text


def test_anthropic_400_is_returned_and_not_retried(stack, client: openai.OpenAI) -> None:
    stack.anthropic.control(mode="status", status=400)

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smart", messages=user())

    assert stack.anthropic.requests == 1
    assert stack.b.requests == 0


def test_anthropic_stream_cut_after_content_raises_in_the_sdk(stack, client: openai.OpenAI) -> None:
    # message_start, content_block_start, ping, two text deltas, then the TCP close.
    stack.anthropic.control(mode="stream_cut", after_events=5)
    stack.b.control(
        mode="status", status=504
    )  # asked to finish the answer (issue 14 recovery): fails, not retried

    stream = client.chat.completions.create(model="smart", messages=user(), stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIError) as caught:
        drain(stream, into=received)

    assert stream_text(received) == "Hello from "
    assert caught.value.code == "stream_interrupted"
    assert stack.b.requests == 1  # content was sent: B was only asked to continue it


# ------------------------------------------------------ the client hangs up before anything was sent


@pytest.mark.parametrize(
    ("stream", "faults"),
    [
        pytest.param(True, {"mode": "stream_stall", "after_events": 1, "delay_s": 30}, id="stream-held-back"),
        pytest.param(False, {"mode": "timeout", "delay_s": 30}, id="completion"),
    ],
)
def test_client_disconnect_before_the_answer_stops_the_fallback_chain(stack, stream: bool, faults) -> None:
    """A client that gives up while the router still waits on A (stream held back before its first
    content, or a whole completion) must not leave A's request running until the router's own timeout,
    nor make the router go on to B: nobody will read B's answer, but B bills for it."""
    stack.a.control(**faults)

    with stack.sdk() as impatient:
        impatient = impatient.with_options(timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(model="fast", messages=user(), stream=stream)
    gave_up = time.monotonic()

    stats = stack.a.wait_for(lambda s: s["in_flight"] == 0, timeout_s=5.0)
    a_closed_after = time.monotonic() - gave_up
    time.sleep(0.3)

    assert stats["in_flight"] == 0
    assert stack.b.requests == 0, "the router called the next candidate for a client that had gone"
    assert a_closed_after < 0.8, f"A's request ran on for {a_closed_after:.2f}s after the client left"
