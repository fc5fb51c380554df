"""Shared harness for the bad-request fuzz tests (issue 7).

The router runs in-process behind `httpx.ASGITransport` (with `raise_app_exceptions=False`, so
an unhandled exception shows up as the 500 the client would see, not as a test-side raise).
Every provider is faked with respx and always answers a *valid* completion (JSON or SSE,
OpenAI or Anthropic shaped, depending on what the router asked for), so any non-4xx answer to
a bad request is the router's own doing.

The harness is synchronous (one `asyncio.Runner` per module) so Hypothesis `@given` tests stay
plain functions: no function-scoped fixture is re-entered per example.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from tier_router.settings import Settings

from tests.support.openai_bodies import chunks, completion, encode_sse, sse_response
from tests.support.router_app import app_settings, asgi_client, build_app
from tests.support.rules import KEYS, URLS, three_providers

ROUTER_KEY = "rk-1"
AUTH_SETTING = ("t=rk-1",)
SMALL_LIMIT = 64 * 1024
"""`max_body_bytes` of the `small` harness: enormous bodies stay cheap to build."""

MODELS = ("auto", "fast", "smart", "gpt-4o", "primary", "secondary", "claude")

# Things that must never reach a client: provider keys, stack traces, module paths.
SECRETS = (*KEYS.values(), "SECRET123", "SECRET456", "SECRET789")
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "tier_router/",
    "tier_router.",
    "site-packages",
    '.py"',
    ".py:",
    "errors.pydantic.dev",
    "RecursionError",
    "UnicodeEncodeError",
    "UnicodeDecodeError",
)
ERROR_STATUSES = frozenset(range(400, 500))


# -- the fake providers ----------------------------------------------------------------------


def openai_answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    model = str(body.get("model"))
    if body.get("stream"):
        return sse_response(encode_sse(chunks(["Hello"], model)))
    return httpx.Response(200, json=completion("Hello", model))


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_answer(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        stream = (
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fuzz",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-test-1",
                        "content": [],
                        "stop_reason": None,
                        "usage": {"input_tokens": 5, "output_tokens": 1},
                    },
                },
            )
            + _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            + _event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
            )
            + _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            + _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 1},
                },
            )
            + _event("message_stop", {"type": "message_stop"})
        )
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)
    return httpx.Response(
        200,
        json={
            "id": "msg_fuzz",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-1",
            "content": [{"type": "text", "text": "Hi"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 1},
        },
    )


# -- invariants ------------------------------------------------------------------------------


def check_response(response: httpx.Response, *, sent: bytes = b"") -> None:
    """What every answer to every request must satisfy, whatever the request was.

    `sent`: the request body; a secret-looking string the client itself sent may be echoed
    (a 404 names the requested model), so it is only checked when the request lacked it.
    """
    status = response.status_code
    text = response.content.decode("utf-8", errors="replace")
    request = getattr(response, "request", None)  # httpx or requests (schemathesis) responses
    url = getattr(request, "url", "?")
    where = f"{getattr(request, 'method', '?')} {getattr(url, 'path', url)} -> {status}: {text[:600]!r}"
    assert status < 500, f"server error: {where}"
    assert status == 200 or status in ERROR_STATUSES, f"unexpected status: {where}"
    headers = header_dict(response.headers)
    for marker in LEAK_MARKERS:
        assert marker not in text, f"internal detail {marker!r} in body: {where}"
    for secret in SECRETS:
        if secret.encode() not in sent:
            assert secret not in text, f"provider key in body: {where}"
        for name, value in headers.items():
            assert secret not in value, f"provider key in header {name}: {where}"
    content_type = headers.get("content-type", "")
    if status >= 400:
        assert content_type.startswith("application/json"), f"error is not JSON: {where}"
        body = json.loads(response.content)
        assert isinstance(body, dict), where
        assert set(body) == {"error"}, where
        error = body["error"]
        assert isinstance(error, dict), where
        assert set(error) == {"message", "type", "param", "code"}, where
        assert isinstance(error["message"], str), where
        assert error["message"], where
        assert isinstance(error["type"], str), where
        assert error["param"] is None or isinstance(error["param"], str), where
        assert error["code"] is None or isinstance(error["code"], str), where
    elif content_type.startswith("application/json"):
        json.loads(response.content)
    elif content_type.startswith("text/event-stream"):
        assert text.rstrip().endswith("data: [DONE]"), f"stream did not finish: {where}"


def header_dict(headers: Any) -> dict[str, str]:
    """Lower-cased names → joined values; schemathesis' responses hold lists of values."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        out[name.lower()] = ", ".join(value) if isinstance(value, list) else str(value)
    return out


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=True).encode()


# -- the harness -----------------------------------------------------------------------------


class Harness:
    """One app, one event loop, one respx mock: `h.post(...)` → an `httpx.Response`."""

    def __init__(self, settings: Settings, token: str | None = None) -> None:
        self.token = token
        self.runner = asyncio.Runner()
        self.upstream_client = httpx.AsyncClient()
        self.app = build_app(three_providers(), settings=settings, keys=KEYS, client=self.upstream_client)
        self.client = asgi_client(self.app, raise_app_exceptions=False)

    def auth(self, headers: dict[str, str] | None = None) -> dict[str, str]:
        out = dict(headers or {})
        if self.token is not None and not any(k.lower() == "authorization" for k in out):
            out["authorization"] = f"Bearer {self.token}"
        return out

    def request(self, method: str, path: str, *, timeout: float = 10.0, **kwargs: Any) -> httpx.Response:
        """Send one request; a request that takes longer than `timeout` is a hang (fails)."""
        if kwargs.pop("authenticate", True):
            kwargs["headers"] = self.auth(kwargs.get("headers"))
        if "json" in kwargs:  # ASCII-escaped, so lone surrogates travel as `\ud800` escapes
            data = kwargs.pop("json")
            if data is not None or method != "GET":
                kwargs["content"] = json_bytes(data)
                kwargs["headers"] = {"content-type": "application/json", **(kwargs.get("headers") or {})}

        async def go() -> httpx.Response:
            return await asyncio.wait_for(self.client.request(method, path, **kwargs), timeout)

        return self.runner.run(go())

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def post_raw(
        self, path: str, content: bytes, content_type: str | None = "application/json", **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if content_type is not None:
            headers["content-type"] = content_type
        return self.post(path, content=content, headers=headers, **kwargs)

    def checked(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """`request` plus the universal invariants."""
        response = self.request(method, path, **kwargs)
        sent = kwargs.get("content") or b""
        if "json" in kwargs:
            sent = json_bytes(kwargs["json"])
        check_response(response, sent=sent if isinstance(sent, bytes) else b"")
        return response

    def assert_alive(self) -> None:
        """The app still serves a valid request (streaming and not) after whatever came before."""
        for stream in (False, True):
            body = {
                "model": "auto",
                "messages": [{"role": "user", "content": "still there?"}],
                "stream": stream,
            }
            response = self.checked("POST", "/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
        assert self.checked("GET", "/v1/models").status_code == 200
        assert self.checked("GET", "/healthz", authenticate=False).status_code == 200

    def close(self) -> None:
        async def shut() -> None:
            await self.client.aclose()
            await self.upstream_client.aclose()

        self.runner.run(shut())
        self.runner.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[respx.MockRouter]:
    """Every provider answers a valid completion, whatever it was sent."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        mock.post(URLS["openai"]).mock(side_effect=openai_answer)
        mock.post(URLS["backup"]).mock(side_effect=openai_answer)
        mock.post(URLS["anthropic"]).mock(side_effect=anthropic_answer)
        yield mock


def _harness(settings: Settings, token: str | None = None) -> Iterator[Harness]:
    harness = Harness(settings, token)
    try:
        yield harness
        harness.assert_alive()  # the app must still serve after the whole module's fuzzing
    finally:
        harness.close()


@pytest.fixture(scope="module")
def open_router(upstream: respx.MockRouter) -> Iterator[Harness]:
    """No router auth, the default (10 MiB) body limit."""
    yield from _harness(app_settings(log_requests=False))


@pytest.fixture(scope="module")
def small(upstream: respx.MockRouter) -> Iterator[Harness]:
    """No router auth, a 64 KiB body limit."""
    yield from _harness(app_settings(log_requests=False, max_body_bytes=SMALL_LIMIT))


@pytest.fixture(scope="module")
def authed(upstream: respx.MockRouter) -> Iterator[Harness]:
    """Router keys required (`t=rk-1`); the harness sends `Bearer rk-1` unless told otherwise."""
    yield from _harness(
        app_settings(api_keys=AUTH_SETTING, log_requests=True),
        token=ROUTER_KEY,
    )
