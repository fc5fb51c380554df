"""`mock` kind: deterministic canned answers served in-process, so a new user can try the
whole flow (rules, fallback, streaming, headers, costs) with no API key.

It is mounted into the shared httpx client as a transport for `mock://` URLs and speaks the
OpenAI wire format, so the forwarder treats it exactly like a real OpenAI-compatible
provider. Options ride on the base URL: `mock://demo?latency_ms=150&fail_rate=0.2`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx

from tier_router.routing.tokens import estimate_tokens


class MockTransport(httpx.AsyncBaseTransport):
    """Answers `POST mock://<name>/chat/completions` like an OpenAI-compatible server."""

    def __init__(self) -> None:
        self._calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        options = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        latency = float(options.get("latency_ms", 0)) / 1000
        fail_rate = float(options.get("fail_rate", 0))
        self._calls += 1
        if latency:
            await asyncio.sleep(latency)
        if fail_rate and (self._calls * fail_rate) % 1 < fail_rate:  # deterministic: every 1/rate-th call
            return httpx.Response(
                503, json={"error": {"message": "mock provider failure", "type": "server_error"}}
            )
        body = json.loads(await request.aread())
        completion = canned_completion(body, request.url.host)
        if body.get("stream"):
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=SSEStream(completion, body, latency),
            )
        return httpx.Response(200, json=completion, headers={"x-request-id": completion["id"]})


def canned_completion(body: dict[str, Any], server: str) -> dict[str, Any]:
    messages = body.get("messages") or []
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    text = last_user.get("content") if isinstance(last_user.get("content"), str) else "(multi-part message)"
    prompt_tokens = sum(estimate_tokens(json.dumps(m.get("content"))) + 4 for m in messages)
    answer = f"[{body.get('model')} via mock:{server}] You said: {text[:200]}"
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    completion_tokens = estimate_tokens(answer)
    return {
        "id": f"chatcmpl-mock{digest}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class SSEStream(httpx.AsyncByteStream):
    def __init__(self, completion: dict[str, Any], body: dict[str, Any], latency: float) -> None:
        self.completion = completion
        self.body = body
        self.delay = latency / 10

    async def __aiter__(self) -> AsyncIterator[bytes]:
        c = self.completion
        base = {
            "id": c["id"],
            "object": "chat.completion.chunk",
            "created": c["created"],
            "model": c["model"],
        }
        words = c["choices"][0]["message"]["content"].split(" ")
        yield event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for i, word in enumerate(words):
            if self.delay:
                await asyncio.sleep(self.delay)
            piece = word if i == 0 else " " + word
            yield event(
                {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            )
        yield event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (self.body.get("stream_options") or {}).get("include_usage"):
            yield event({**base, "choices": [], "usage": c["usage"]})
        yield b"data: [DONE]\n\n"


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
