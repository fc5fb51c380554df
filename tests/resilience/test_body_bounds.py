"""Issue 13, items 10 and 11: a request body is bounded in shape and in time, on the real server.

- A body within the byte limit cannot blow up once parsed: 10 MiB of `[{},{},…]` (3.5 million
  dicts, 320 MB of peak RSS before) is refused with a 413 naming the limit, and the server's
  peak RSS (`/proc/<pid>/status` VmHWM) barely moves. Nesting deeper than the limit is a 400.
  Real big requests (200 messages with tool calls, 100 tools with schemas, 20 images, a pasted
  CSV full of commas) are far below the limits and answered.
- A client that sends its headers and stalls, or trickles its body a byte at a time, gets a
  408 (OpenAI-style error) once `body_timeout_s` has passed since the request — one deadline,
  not one per read — and its connection is closed. Each is one access-log line: status 408,
  outcome `refused`, error `request_timeout`.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.body import BodyDeadlines
from tier_router.settings import DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_JSON_VALUES

from tests.support.router_process import Router, running_router

KEY = "trk-bounds-ROUTERKEY-0123456789"
BODY_TIMEOUT_S = 0.6
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {"p": {"kind": "mock", "base_url": "mock://fast"}},
    "models": {"m": {"provider": "p", "id": "mock-m", "price": {"input": 1.0, "output": 1.0}}},
    "tiers": {"t": ["m"]},
    "default_tier": "t",
}
MAX_BODY = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    env = {"TIER_ROUTER_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S), "TIER_ROUTER_BACKGROUND_SETTLE": "0"}
    workdir = tmp_path_factory.mktemp("bounds")
    with running_router(workdir, RULES, key=KEY, store_url="memory://", env=env) as r:
        yield r


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def post(router: Router, content: bytes, timeout: float = 30.0) -> httpx.Response:
    return httpx.post(
        f"{router.url}/v1/chat/completions",
        content=content,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        timeout=timeout,
    )


def lines_for(router: Router, request_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in router.request_lines() if r["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# --- shape -----------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_ten_mib_of_empty_objects_is_refused_before_it_is_parsed(router: Router) -> None:
    count = (MAX_BODY - 2) // 3
    body = b"[" + b"{}," * (count - 1) + b"{}]"
    assert len(body) <= MAX_BODY  # within the byte limit: only the shape can refuse it
    before = peak_rss_kb(router.proc.pid)
    answer = post(router, body)
    grew_mb = (peak_rss_kb(router.proc.pid) - before) / 1024
    assert answer.status_code == 413, answer.text
    error = answer.json()["error"]
    assert error["code"] == "request_too_large"
    assert f"limit of {DEFAULT_MAX_JSON_VALUES} JSON values" in error["message"]
    # Parsed, this body is 320 MB; refused on its bytes it costs the bytes and one copy.
    assert grew_mb < 60, f"peak RSS grew by {grew_mb:.0f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_body_of_invalid_messages_within_the_limits_is_refused_at_the_first(router: Router) -> None:
    """Under the value limit, but every message invalid: pydantic reported all 90,000 errors
    (+95 MB of peak RSS, 0.3 s of CPU); it reports the first and stops."""
    body = b'{"model": "t", "messages": [' + b",".join([b"{}"] * 90_000) + b"]}"
    before = peak_rss_kb(router.proc.pid)
    answer = post(router, body)
    grew_mb = (peak_rss_kb(router.proc.pid) - before) / 1024
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "messages[0].role"
    assert grew_mb < 40, f"peak RSS grew by {grew_mb:.0f} MB"


def test_escaped_quotes_cannot_make_the_string_scan_quadratic(router: Router) -> None:
    """An unterminated string of a million escaped quotes and commas: a string pattern that
    allows escapes retries from each of them (40,000 took 93 s); escapes removed first, a pass
    is linear."""
    body = b'{"model": "t", "x": ["' + b'\\",' * 1_000_000
    started = time.monotonic()
    answer = post(router, body, timeout=10)
    assert answer.status_code == 413, answer.text
    assert time.monotonic() - started < 3


def test_nesting_past_the_limit_is_a_400_and_brackets_in_strings_do_not_count(router: Router) -> None:
    depth = DEFAULT_MAX_JSON_DEPTH  # the body itself is one level
    deep = {"model": "t", "messages": [{"role": "user", "content": "hi"}], "metadata": {}}
    nested: Any = 1
    for _ in range(depth):
        nested = [nested]
    deep["x"] = nested
    answer = post(router, json.dumps(deep).encode())
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_json"
    assert f"limit of {depth} levels" in answer.json()["error"]["message"]
    deep["x"] = nested[0]  # one level less: exactly the limit
    assert post(router, json.dumps(deep).encode()).status_code == 200

    brackets = "[[[[{{{{" * 50_000 + "," * 300_000  # 400,000 brackets and 300,000 commas, in a string
    fine = {"model": "t", "messages": [{"role": "user", "content": brackets}]}
    answer = post(router, json.dumps(fine).encode())
    assert answer.status_code == 200, answer.text


def big_real_request() -> dict[str, Any]:
    """200 messages with tool calls, 100 tools with schemas, 20 images as data URLs."""
    schema = {
        "type": "object",
        "properties": {
            f"field_{i}": {"type": "string", "enum": [f"v{j}" for j in range(10)], "description": "x"}
            for i in range(10)
        },
        "required": ["field_0"],
    }
    tools = [
        {"type": "function", "function": {"name": f"tool_{i}", "parameters": schema}} for i in range(100)
    ]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
    for i in range(100):
        function = {"name": "tool_1", "arguments": '{"a": [1, 2]}'}
        call = {"id": f"c{i}", "type": "function", "function": function}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "result, with, commas " * 20})
    image = "data:image/jpeg;base64," + "QUJD" * 50_000
    parts = [{"type": "image_url", "image_url": {"url": image}} for _ in range(20)]
    messages.append({"role": "user", "content": [{"type": "text", "text": "describe"}, *parts]})
    return {"model": "t", "messages": messages, "tools": tools}


def test_a_big_real_request_is_answered(router: Router) -> None:
    body = json.dumps(big_real_request()).encode()
    answer = post(router, body)
    assert answer.status_code == 200, answer.text[:300]


# --- time ------------------------------------------------------------------------------------


def raw_request(router: Router, declared: int) -> socket.socket:
    host, port = router.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"host: {host}\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\n"
        f"content-length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


def read_until_closed(sock: socket.socket, within_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not."""
    sock.settimeout(within_s)
    received = b""
    while chunk := sock.recv(65536):  # a timeout raises: the connection was held open
        received += chunk
    return received


def parse_response(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_timed_out(router: Router, raw: bytes) -> None:
    status, headers, body = parse_response(raw)
    assert status == 408, raw[:300]
    assert body["error"]["code"] == "request_timeout"
    assert f"limit of {BODY_TIMEOUT_S:g} s" in body["error"]["message"]
    assert headers["connection"] == "close"
    lines = lines_for(router, headers["x-router-request-id"])
    assert len(lines) == 1, lines
    assert (lines[0]["status"], lines[0]["outcome"], lines[0]["error"]) == (408, "refused", "request_timeout")


def test_a_body_that_stalls_after_its_headers_gets_a_408_and_the_connection_is_closed(router: Router) -> None:
    sock = raw_request(router, declared=1000)
    started = time.monotonic()
    with sock:
        sock.sendall(b'{"model": "t", ')  # then nothing
        raw = read_until_closed(sock, within_s=BODY_TIMEOUT_S + 5)
    assert time.monotonic() - started < BODY_TIMEOUT_S + 2
    assert_timed_out(router, raw)


def test_a_body_trickled_a_byte_at_a_time_is_cut_by_one_deadline(router: Router) -> None:
    body = json.dumps({"model": "t", "messages": [{"role": "user", "content": "hi"}]}).encode()
    sock = raw_request(router, declared=len(body))
    started = time.monotonic()
    with sock:
        for byte in body[:-1]:  # every gap far below the deadline; the whole body far above it
            sock.sendall(bytes([byte]))
            answered, _, _ = select.select([sock], [], [], BODY_TIMEOUT_S / 10)
            if answered:  # stop sending: bytes sent after the close would reset the connection
                break
        raw = read_until_closed(sock, within_s=5)
    assert time.monotonic() - started < BODY_TIMEOUT_S + 2
    assert_timed_out(router, raw)


# --- the deadline itself: no timer per request -------------------------------------------------


def test_deadlines_cut_an_overdue_read_and_leave_other_cancellations_alone() -> None:
    async def main() -> None:
        deadlines = BodyDeadlines(0.1)
        assert await deadlines.within(asyncio.sleep(0, result=b"body")) == b"body"  # at once: no wait
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 0\.1 s"):
            await deadlines.within(asyncio.sleep(5))
        assert 0.1 <= time.monotonic() - started < 0.5
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        reader = asyncio.create_task(deadlines.within(asyncio.sleep(5)))
        await asyncio.sleep(0.01)
        reader.cancel()  # the server's cancellation (shutdown, a disconnect): not a timeout
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert deadlines.reading == {}
        assert deadlines.cut == set()

    asyncio.run(main())
