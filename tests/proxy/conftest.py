"""Shared fixtures for the proxy tests: a small rules file, the app driven in-process, a respx
router standing in for every provider, and SSE helpers.

The app gets its own upstream `httpx.AsyncClient` (so respx intercepts it) and a fake
`KeySource`; the test talks to the app through `httpx.ASGITransport`. Helpers are fixtures
(not imports) so the test modules never depend on how pytest names this package.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tier_router.app import create_app
from tier_router.provider_keys import KeySource
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings

OPENAI_URL = "https://openai.test/v1/chat/completions"
BACKUP_URL = "https://backup.test/v1/chat/completions"
ANTHROPIC_URL = "https://anthropic.test/v1/messages"

KEYS: dict[str, str] = {
    "OPENAI_KEY": "sk-test-openai-SECRET123",
    "BACKUP_KEY": "sk-test-backup-SECRET456",
    "ANTHROPIC_KEY": "sk-ant-test-SECRET789",
}

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "openai-a": {"kind": "openai", "base_url": "https://openai.test/v1", "api_key_env": "OPENAI_KEY"},
        "openai-b": {"kind": "openai", "base_url": "https://backup.test/v1", "api_key_env": "BACKUP_KEY"},
        "anthropic": {
            "kind": "anthropic",
            "base_url": "https://anthropic.test",
            "api_key_env": "ANTHROPIC_KEY",
        },
    },
    "models": {
        "primary": {"provider": "openai-a", "id": "gpt-a-2025", "price": {"input": 1.0, "output": 4.0}},
        "secondary": {"provider": "openai-b", "id": "gpt-b-mini", "price": {"input": 0.2, "output": 0.8}},
        "claude": {
            "provider": "anthropic",
            "id": "claude-test-1",
            "price": {"input": 3.0, "output": 15.0},
            "max_output": 2048,
        },
    },
    "tiers": {
        "fast": ["primary", "secondary"],
        "smart": ["claude", "secondary"],
        "claude-only": ["claude"],
    },
    "default_tier": "fast",
    "aliases": {"gpt-4o": "fast"},
    "rules": [
        {
            "name": "needs-thinking",
            "tier": "smart",
            "when": {"last_user_matches": {"pattern": "prove", "ignore_case": True}},
        }
    ],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def keys() -> dict[str, str]:
    """The fake provider keys the app is given (by env var name)."""
    return dict(KEYS)


@pytest.fixture
def urls() -> dict[str, str]:
    return {"openai": OPENAI_URL, "backup": BACKUP_URL, "anthropic": ANTHROPIC_URL}


@pytest.fixture
def rules_dict() -> Callable[..., dict[str, Any]]:
    """`rules_dict(timeouts={...})` → a fresh copy of RULES, every provider with those timeouts."""

    def build(timeouts: dict[str, float] | None = None) -> dict[str, Any]:
        raw = copy.deepcopy(RULES)
        if timeouts:
            for provider in raw["providers"].values():
                provider["timeouts"] = dict(timeouts)
        return raw

    return build


@pytest.fixture
async def make_app(
    anyio_backend: str, rules_dict: Callable[..., dict[str, Any]]
) -> AsyncIterator[Callable[..., Any]]:
    """`make_app(rules=..., keys=..., settings=..., timeouts=...)` → a new ASGI app whose upstream
    client (closed at teardown) is intercepted by respx."""
    opened: list[httpx.AsyncClient] = []

    def make(
        *,
        rules: dict[str, Any] | None = None,
        keys: dict[str, str] | None = None,
        settings: Settings | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> Any:
        upstream_client = httpx.AsyncClient()
        opened.append(upstream_client)
        return create_app(
            settings or Settings(rules_path=Path("tests-proxy-unused.yaml")),
            rules=parse_rules(rules if rules is not None else rules_dict(timeouts), "proxy-test-rules.yaml"),
            client=upstream_client,
            keys=KeySource(dict(KEYS) if keys is None else keys),
        )

    yield make
    for client in opened:
        await client.aclose()


@pytest.fixture
async def make_router(make_app: Callable[..., Any]) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """`make_router(**make_app_options)` → an httpx client talking to a new app in-process."""
    opened: list[httpx.AsyncClient] = []

    def make(**options: Any) -> httpx.AsyncClient:
        router = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_app(**options)), base_url="http://router", timeout=10.0
        )
        opened.append(router)
        return router

    yield make
    for client in opened:
        await client.aclose()


@pytest.fixture
def router(make_router: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    """The default app: RULES, every key set, no router auth."""
    return make_router()


@pytest.fixture
def upstream() -> Iterable[respx.MockRouter]:
    """Every provider, mocked. Unmocked URLs fail the request (respx raises)."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    """`chat(text="hi", model="auto", **fields)` → a chat-completions request body."""

    def build(text: str = "Say hi", model: str = "auto", **fields: Any) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": text}], **fields}

    return build


@pytest.fixture
def completion() -> Callable[..., dict[str, Any]]:
    """`completion(text, model=...)` → an OpenAI chat.completion body as a provider sends it."""

    def build(text: str = "Hello there", model: str = "gpt-a-2025-06-01", **fields: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-upstream-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            "system_fingerprint": "fp_upstream",
            **fields,
        }

    return build


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stream-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


@pytest.fixture
def openai_chunks() -> Callable[..., list[dict[str, Any]]]:
    """`openai_chunks(["Hel", "lo"], model=..., usage=True)` → an OpenAI chunk sequence: role,
    one chunk per text piece, finish, and (if usage) the usage-only chunk."""

    def build(
        pieces: Iterable[str] = ("Hel", "lo"), model: str = "gpt-a-2025-06-01", usage: bool = True
    ) -> list[dict[str, Any]]:
        chunks = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks += [_chunk(model, {"content": piece}) for piece in pieces]
        chunks.append(_chunk(model, {}, "stop"))
        if usage:
            chunks.append(
                {
                    "id": "chatcmpl-stream-1",
                    "object": "chat.completion.chunk",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
                }
            )
        return chunks

    return build


def encode_sse(events: Iterable[dict[str, Any] | str | bytes], done: bool = True) -> bytes:
    """Dicts become `data: <json>` events, str become `data: <str>` events, bytes go raw."""
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
        elif isinstance(event, str):
            out += f"data: {event}\n\n".encode()
        else:
            out += b"data: " + json.dumps(event).encode() + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return out


@pytest.fixture
def sse() -> Callable[..., bytes]:
    """`sse(events, done=True)` → an SSE body (see `encode_sse`)."""
    return encode_sse


@pytest.fixture
def sse_response() -> Callable[..., httpx.Response]:
    """`sse_response(body_bytes, headers=...)` → a 200 `text/event-stream` respx response."""

    def build(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream", **(headers or {})}, content=body
        )

    return build


def parse_sse(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    payloads = []
    for block in text.split("\n\n"):
        data = [line[len("data: ") :] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            payloads.append("\n".join(data))
    return payloads


@pytest.fixture
def read_sse() -> Callable[[str], list[str]]:
    return parse_sse


class SlowStream(httpx.AsyncByteStream):
    """An upstream body delivered as `(delay_seconds, bytes)` steps; records whether it was closed."""

    def __init__(self, steps: Iterable[tuple[float, bytes]]) -> None:
        self.steps = list(steps)
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, data in self.steps:
            if delay:
                await asyncio.sleep(delay)
            yield data

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def slow_stream() -> Callable[..., SlowStream]:
    return SlowStream


@pytest.fixture
def sleepy() -> Callable[[float, httpx.Response], Callable[[httpx.Request], Awaitable[httpx.Response]]]:
    """`sleepy(seconds, response)` → an async respx side effect answering after a delay.

    respx records a call only once its side effect returns, so a call the router abandoned
    (timed out) is not in `route.calls`; the effect's `started` list records every request.
    """

    def build(
        seconds: float, response: httpx.Response
    ) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
        started: list[httpx.Request] = []

        async def effect(request: httpx.Request) -> httpx.Response:
            started.append(request)
            await asyncio.sleep(seconds)
            return response

        effect.started = started  # type: ignore[attr-defined]
        return effect

    return build
