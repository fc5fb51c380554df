"""The in-process server behind `mock://` URLs: an httpx transport mounted into the shared
client, answering `POST mock://<name>/chat/completions` and `POST mock://<name>/embeddings`
like an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json

import httpx

from tier_router.providers.mock.answers import completion
from tier_router.providers.mock.embeddings import BadRequest, embeddings
from tier_router.providers.mock.options import MockOptions
from tier_router.providers.mock.stream import SSEStream


class MockTransport(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self._calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            options = MockOptions.parse(request.url.query.decode())
        except ValueError as exc:  # a rules-file mistake: say so to whoever sent the request
            return error(400, f"mock://{request.url.host}: {exc}", "invalid_request_error")
        self._calls += 1
        if options.latency_s:
            await asyncio.sleep(options.latency_s)
        rate = options.fail_rate
        if rate and (self._calls * rate) % 1 < rate:  # deterministic: every 1/rate-th call
            return error(503, "mock provider failure", "server_error")
        try:
            body = json.loads(await request.aread())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error(400, "the request body is not a JSON object", "invalid_request_error")
        if request.url.path.endswith("/embeddings"):
            try:
                return httpx.Response(200, json=embeddings(body))
            except BadRequest as exc:
                return error(400, str(exc), "invalid_request_error")
        answer = completion(body, request.url.host, options)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                stream=SSEStream(answer, usage, options.latency_s),
            )
        return httpx.Response(200, json=answer, headers={"x-request-id": answer["id"]})


def error(status: int, message: str, kind: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": kind}})
