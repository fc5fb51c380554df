"""The fake upstreams must be trustworthy before router tests and benchmarks lean on them.

Everything here goes over real loopback HTTP (uvicorn in a thread), and the OpenAI SDK is used as an
independent judge of the OpenAI fake's wire format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import iter_sse, make_fake_upstream
from tests.support.loopback import free_port, run_uvicorn_in_thread
from tests.support.openai_bodies import WEATHER_TOOL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
OPENAI_AUTH = {"authorization": "Bearer sk-test"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}


def chat(content: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def msgs(content: str = "What is the capital of France?", **extra: Any) -> dict[str, Any]:
    body = {"model": "claude-test", "max_tokens": 256, "messages": [{"role": "user", "content": content}]}
    return {**body, **extra}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def openai_url() -> Iterator[str]:
    with run_uvicorn_in_thread(make_fake_upstream("openai", name="fake-oa")) as url:
        yield url


@pytest.fixture(scope="module")
def anthropic_url() -> Iterator[str]:
    with run_uvicorn_in_thread(make_fake_upstream("anthropic", name="fake-an")) as url:
        yield url


@pytest.fixture
def oa(openai_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=openai_url, headers=OPENAI_AUTH, timeout=5) as client:
        client.post("/_control", json={"reset": True}).raise_for_status()
        yield client


@pytest.fixture
def an(anthropic_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=anthropic_url, headers=ANTHROPIC_AUTH, timeout=5) as client:
        client.post("/_control", json={"reset": True}).raise_for_status()
        yield client


@pytest.fixture
def sdk(openai_url: str, oa: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test", base_url=openai_url + "/v1", max_retries=0, timeout=5) as client:
        yield client


def control(client: httpx.Client, **faults: Any) -> None:
    client.post("/_control", json=faults).raise_for_status()


def sse(response: httpx.Response) -> list[tuple[str | None, str]]:
    return list(iter_sse(iter(response.text.split("\n"))))


# ------------------------------------------------------------------------------------- OpenAI: happy


def test_openai_sdk_completion_is_valid_and_deterministic(sdk: openai.OpenAI) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    first = raw.parse()
    again = sdk.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-ratelimit-remaining-requests"] == "9999"
    assert first.object == "chat.completion"
    assert first.model == "gpt-test"
    assert first.choices[0].finish_reason == "stop"
    content = first.choices[0].message.content
    assert content is not None
    assert "fake-oa" in content
    assert "What is the capital of France?" in content
    assert again.choices[0].message.content == content
    assert first.id != again.id
    assert first.usage is not None
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens


def test_openai_sdk_stream_matches_non_stream(sdk: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "stream me please"}]
    whole = sdk.chat.completions.create(model="gpt-test", messages=messages)
    chunks = list(
        sdk.chat.completions.create(
            model="gpt-test", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage


def test_openai_stream_without_include_usage_has_no_usage_chunk(oa: httpx.Client) -> None:
    response = oa.post(CHAT, json=chat(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    assert events[-1] == (None, "[DONE]")
    parsed = [json.loads(data) for _, data in events[:-1]]
    assert all(p["choices"] for p in parsed)
    assert all("usage" not in p for p in parsed)


def test_openai_tools_answer_with_tool_call_in_both_modes(sdk: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Weather in Paris?"}]
    whole = sdk.chat.completions.create(model="gpt-test", messages=messages, tools=[WEATHER_TOOL])
    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Weather in Paris?", "unit": "c"}  # type: ignore[union-attr]

    stream = sdk.chat.completions.create(
        model="gpt-test", messages=messages, tools=[WEATHER_TOOL], stream=True
    )
    deltas = [c.choices[0].delta for c in stream]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert "".join(tc.function.arguments or "" for tc in calls if tc.function) == call.function.arguments  # type: ignore[union-attr]

    followup: Any = [
        *messages,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    final = sdk.chat.completions.create(model="gpt-test", messages=followup, tools=[WEATHER_TOOL])
    assert final.choices[0].finish_reason == "stop"
    assert "18C and sunny" in (final.choices[0].message.content or "")


def test_openai_max_tokens_truncates_with_length(oa: httpx.Client) -> None:
    body = oa.post(CHAT, json=chat(max_tokens=2)).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


def test_openai_requires_bearer_auth(openai_url: str) -> None:
    response = httpx.post(openai_url + CHAT, json=chat())
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_stats_record_what_was_forwarded(oa: httpx.Client) -> None:
    oa.post(
        CHAT + "?trace=1", json=chat(model="gpt-x", custom_field={"keep": True}), headers={"x-extra": "1"}
    )
    oa.post("/chat/completions", json=chat("no /v1 prefix"))
    stats = oa.get("/_stats").json()
    assert stats["requests"] == 2
    assert stats["outcomes"] == {"ok": 2}
    first, last = stats["recent"]
    assert first["body"]["model"] == "gpt-x"
    assert first["body"]["custom_field"] == {"keep": True}
    assert first["headers"]["x-extra"] == "1"
    assert first["query"] == "trace=1"
    assert last == stats["last_request"]
    assert last["path"] == "/chat/completions"
    oa.post("/_control", json={"reset": True})
    assert oa.get("/_stats").json()["requests"] == 0


def test_control_rejects_unknown_keys_and_modes(oa: httpx.Client) -> None:
    assert oa.post("/_control", json={"mdoe": "reset"}).status_code == 400
    assert oa.post("/_control", json={"mode": "explode"}).status_code == 400
    assert oa.get("/_control").json()["faults"]["mode"] == "ok"


# ---------------------------------------------------------------------------------- Anthropic: happy


def test_anthropic_message_shape(an: httpx.Client) -> None:
    response = an.post(MESSAGES, json=msgs())
    body = response.json()
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    assert body["id"].startswith("msg_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant", "claude-test")
    assert body["content"][0]["type"] == "text"
    assert "fake-an" in body["content"][0]["text"]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["cache_read_input_tokens"] == 0
    assert body["usage"]["input_tokens"] > 0
    assert body["usage"]["output_tokens"] > 0


def test_anthropic_stream_event_sequence_matches_non_stream(an: httpx.Client) -> None:
    whole = an.post(MESSAGES, json=msgs()).json()
    events = sse(an.post(MESSAGES, json=msgs(stream=True)))
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(d) for _, d in events]
    assert all(d["type"] == name for (name, _), d in zip(events, data, strict=True))
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == whole["content"][0]["text"]
    assert data[0]["message"]["usage"]["input_tokens"] == whole["usage"]["input_tokens"]
    assert data[-2]["delta"]["stop_reason"] == "end_turn"
    assert data[-2]["usage"]["output_tokens"] == whole["usage"]["output_tokens"]


def test_anthropic_tools_answer_with_tool_use_in_both_modes(an: httpx.Client) -> None:
    whole = an.post(MESSAGES, json=msgs("Weather in Oslo?", tools=[WEATHER_ANTHROPIC])).json()
    assert whole["stop_reason"] == "tool_use"
    assert [b["type"] for b in whole["content"]] == ["text", "tool_use"]
    tool_use = whole["content"][1]
    assert tool_use["id"].startswith("toolu_")
    assert tool_use["input"] == {"city": "Weather in Oslo?", "unit": "c"}

    events = sse(an.post(MESSAGES, json=msgs("Weather in Oslo?", tools=[WEATHER_ANTHROPIC], stream=True)))
    data = [json.loads(d) for _, d in events]
    starts = [d["content_block"] for d in data if d["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["text", "tool_use"]
    partial = "".join(
        d["delta"]["partial_json"] for d in data if d["type"] == "content_block_delta" and d["index"] == 1
    )
    assert json.loads(partial) == tool_use["input"]
    assert data[-2]["delta"]["stop_reason"] == "tool_use"

    result = {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "-3C, snow"}
    followup = msgs(tools=[WEATHER_ANTHROPIC])
    followup["messages"] += [
        {"role": "assistant", "content": whole["content"]},
        {"role": "user", "content": [result]},
    ]
    final = an.post(MESSAGES, json=followup).json()
    assert final["stop_reason"] == "end_turn"
    assert "-3C, snow" in final["content"][0]["text"]


@pytest.mark.parametrize(
    ("headers", "status", "error_type"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "k"}, 400, "invalid_request_error"),
    ],
)
def test_anthropic_requires_key_and_version(
    anthropic_url: str, headers: dict[str, str], status: int, error_type: str
) -> None:
    response = httpx.post(anthropic_url + MESSAGES, json=msgs(), headers=headers)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type


def test_anthropic_requires_max_tokens(an: httpx.Client) -> None:
    body = msgs()
    del body["max_tokens"]
    response = an.post(MESSAGES, json=body)
    assert response.status_code == 400
    assert an.get("/_stats").json()["outcomes"] == {"bad_request": 1}


# ------------------------------------------------------------------------------------------ faults


def test_status_fault_with_headers_and_custom_body(oa: httpx.Client, an: httpx.Client) -> None:
    control(oa, mode="status", status=503, headers={"retry-after": "30"})
    response = oa.post(CHAT, json=chat())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["error"]["type"] == "server_error"

    control(an, mode="status", status=529)
    assert an.post(MESSAGES, json=msgs()).json()["error"]["type"] == "overloaded_error"
    control(an, mode="status", status=429, body={"custom": True})
    assert an.post(MESSAGES, json=msgs()).json() == {"custom": True}


def test_status_fault_is_typed_by_the_openai_sdk(sdk: openai.OpenAI, oa: httpx.Client) -> None:
    control(oa, mode="status", status=429)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])


def test_times_faults_only_the_next_n_requests(oa: httpx.Client) -> None:
    control(oa, mode="status", status=500, times=2)
    assert [oa.post(CHAT, json=chat()).status_code for _ in range(4)] == [500, 500, 200, 200]
    assert oa.get("/_stats").json()["outcomes"] == {"status": 2, "ok": 2}


def test_failure_rate_is_seeded_and_every_is_exact(oa: httpx.Client) -> None:
    def run() -> list[int]:
        control(oa, failure_rate=0.3, seed=7)
        return [oa.post(CHAT, json=chat()).status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 500}
    assert 4 <= first.count(500) <= 20

    control(oa, mode="status", status=502, every=3)
    assert [oa.post(CHAT, json=chat()).status_code for _ in range(6)] == [200, 200, 502, 200, 200, 502]


def test_timeout_sleeps_before_headers_and_notices_disconnect(oa: httpx.Client) -> None:
    control(oa, mode="timeout", delay_s=2)
    with pytest.raises(httpx.ReadTimeout):
        oa.post(CHAT, json=chat(), timeout=httpx.Timeout(5, read=0.2))
    deadline = time.monotonic() + 2
    while oa.get("/_stats").json()["disconnects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    stats = oa.get("/_stats").json()
    assert stats["disconnects"] == 1
    assert stats["in_flight"] == 0


def test_reset_closes_the_connection_without_a_response(oa: httpx.Client, an: httpx.Client) -> None:
    for client, path, body in ((oa, CHAT, chat()), (an, MESSAGES, msgs(stream=True))):
        control(client, mode="reset")
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.post(path, json=body)
        control(client, mode="ok")
        assert client.post(path, json=body).status_code == 200


def test_bad_json_and_wrong_content_type(oa: httpx.Client) -> None:
    control(oa, mode="bad_json")
    response = oa.post(CHAT, json=chat())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()

    control(oa, mode="wrong_content_type")
    response = oa.post(CHAT, json=chat(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")


def test_stream_stall_sends_first_events_then_goes_quiet(oa: httpx.Client, an: httpx.Client) -> None:
    control(oa, mode="stream_stall", delay_s=2, after_events=1)
    with oa.stream("POST", CHAT, json=chat(stream=True), timeout=httpx.Timeout(5, read=0.3)) as response:
        lines = response.iter_lines()
        first = next(lines)
        assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
        with pytest.raises(httpx.ReadTimeout):
            list(lines)

    control(an, mode="stream_stall", delay_s=0.3, after_events=2)
    started = time.monotonic()
    events = sse(an.post(MESSAGES, json=msgs(stream=True)))
    assert time.monotonic() - started >= 0.3
    assert events[-1][0] == "message_stop"


def test_stream_cut_ends_without_done(oa: httpx.Client, an: httpx.Client) -> None:
    control(oa, mode="stream_cut", after_events=3)
    seen: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        oa.stream("POST", CHAT, json=chat(stream=True)) as response,
    ):
        seen.extend(line for line in response.iter_lines() if line)
    assert len(seen) == 3
    assert "data: [DONE]" not in seen

    control(an, mode="stream_cut", after_events=4)
    names: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        an.stream("POST", MESSAGES, json=msgs(stream=True)) as response,
    ):
        names.extend(line[7:] for line in response.iter_lines() if line.startswith("event:"))
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta"]


def test_stream_cut_on_non_stream_truncates_body(oa: httpx.Client) -> None:
    control(oa, mode="stream_cut")
    with pytest.raises(httpx.RemoteProtocolError):
        oa.post(CHAT, json=chat())


def test_stream_garbage_inserts_a_malformed_data_line(oa: httpx.Client, sdk: openai.OpenAI) -> None:
    control(oa, mode="stream_garbage")
    events = sse(oa.post(CHAT, json=chat(stream=True)))
    bad = []
    for _, data in events[:-1]:
        try:
            json.loads(data)
        except json.JSONDecodeError:
            bad.append(data)
    assert len(bad) == 1
    assert events.index((None, bad[0])) == 1
    assert events[-1] == (None, "[DONE]")
    with pytest.raises(json.JSONDecodeError):
        list(sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))


def test_drip_and_latency_slow_things_down(oa: httpx.Client) -> None:
    control(oa, mode="drip", drip_ms=20)
    started = time.monotonic()
    events = sse(oa.post(CHAT, json=chat(stream=True)))
    assert time.monotonic() - started >= 0.02 * (len(events) - 1)

    control(oa, latency_ms=150)
    started = time.monotonic()
    assert oa.post(CHAT, json=chat()).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_client_disconnect_mid_stream_is_counted(oa: httpx.Client) -> None:
    control(oa, mode="drip", drip_ms=50)
    with oa.stream("POST", CHAT, json=chat(stream=True)) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 2
    while oa.get("/_stats").json()["disconnects"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert oa.get("/_stats").json()["disconnects"] == 1


@pytest.mark.anyio
async def test_async_openai_sdk_streams(openai_url: str, oa: httpx.Client) -> None:
    async with openai.AsyncOpenAI(api_key="k", base_url=openai_url + "/v1", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-async", messages=[{"role": "user", "content": "async hello"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert "async hello" in text


# --------------------------------------------------------------------------------------------- CLI


def test_cli_runs_a_fake_in_its_own_process() -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.fake_upstream", "--kind", "anthropic", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.post(
                    f"http://127.0.0.1:{port}{MESSAGES}", json=msgs(), headers=ANTHROPIC_AUTH, timeout=1
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[1].decode()
                assert time.monotonic() < deadline, "fake CLI did not start"
                time.sleep(0.05)
        assert response.json()["type"] == "message"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
