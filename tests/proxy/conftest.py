"""Fixtures for the proxy tests: the app on the shared rules (`tests.support.rules`: providers
on `*.test` hosts, answered by the root conftest's respx `upstream`), driven in-process; and
the OpenAI body and SSE helpers as fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpx
import pytest

from tests.support import openai_bodies
from tests.support.router_app import Apps
from tests.support.rules import KEYS, URLS, three_providers


@pytest.fixture
def keys() -> dict[str, str]:
    """The fake provider keys the app is given (by env var name)."""
    return dict(KEYS)


@pytest.fixture
def urls() -> dict[str, str]:
    return dict(URLS)


@pytest.fixture
def rules_dict() -> Callable[..., dict[str, Any]]:
    """`rules_dict(timeouts={...})` → a fresh copy of the rules, every provider with those timeouts."""

    def build(timeouts: dict[str, float] | None = None) -> dict[str, Any]:
        return three_providers(timeouts=timeouts)

    return build


@pytest.fixture
def make_app(apps: Apps, rules_dict: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
    """`make_app(rules=..., keys=..., settings=..., timeouts=...)` → a new ASGI app whose upstream
    client (closed at teardown) is intercepted by respx."""

    def make(
        *,
        rules: dict[str, Any] | None = None,
        keys: dict[str, str] | None = None,
        settings: Any = None,
        timeouts: dict[str, float] | None = None,
    ) -> Any:
        return apps.app(
            rules if rules is not None else rules_dict(timeouts),
            settings=settings,
            keys=KEYS if keys is None else keys,
        )

    return make


@pytest.fixture
def make_router(apps: Apps, make_app: Callable[..., Any]) -> Callable[..., httpx.AsyncClient]:
    """`make_router(**make_app_options)` → an httpx client talking to a new app in-process."""
    return lambda **options: apps.client(make_app(**options))


@pytest.fixture
def router(make_router: Callable[..., httpx.AsyncClient]) -> httpx.AsyncClient:
    """The default app: the shared rules, every key set, no router auth."""
    return make_router()


@pytest.fixture
def openai_chunks() -> Callable[..., list[dict[str, Any]]]:
    """`openai_chunks(["Hel", "lo"], model=..., usage=True)` → an OpenAI chunk sequence: role,
    one chunk per text piece, finish, and (if usage) the usage-only chunk."""
    return openai_bodies.chunks


@pytest.fixture
def sse() -> Callable[..., bytes]:
    """`sse(events, done=True)` → an SSE body (see `openai_bodies.encode_sse`)."""
    return openai_bodies.encode_sse


@pytest.fixture
def sse_response() -> Callable[..., httpx.Response]:
    """`sse_response(body_bytes, headers=...)` → a 200 `text/event-stream` respx response."""
    return openai_bodies.sse_response


@pytest.fixture
def read_sse() -> Callable[[str], list[str]]:
    return openai_bodies.parse_sse


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
