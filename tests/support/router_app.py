"""The router app under test, in this process: built from a rules dict, talked to over ASGI
(`httpx.ASGITransport`), or served by uvicorn on 127.0.0.1 from a thread.

(`tests.support.router_process` starts it the way a user does instead: `tier-router serve`.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from tier_router.app import RouterApp, create_app
from tier_router.gateway import make_http_client
from tier_router.provider_keys import KeySource
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings

from tests.support.loopback import run_uvicorn_in_thread


def app_settings(**options: Any) -> Settings:
    """Settings for an app whose rules are given directly (the rules path is never read)."""
    return Settings(**{"rules_path": Path("test-rules-unused.yaml"), **options})


def build_app(
    rules: dict[str, Any],
    *,
    settings: Settings | None = None,
    keys: Mapping[str, str] | None = None,
    **gateway_options: Any,
) -> RouterApp:
    """`create_app` on `rules` (a rules document as a dict); provider keys from `keys` (by
    environment variable name) when given; other options (client, store, ...) go to the
    gateway as they are."""
    if keys is not None:
        gateway_options["keys"] = KeySource(dict(keys))
    return create_app(
        settings or app_settings(), rules=parse_rules(rules, "test-rules.yaml"), **gateway_options
    )


def asgi_client(
    app: Any, *, timeout: float = 10.0, raise_app_exceptions: bool = True, **client_options: Any
) -> httpx.AsyncClient:
    """An httpx client talking to `app` in-process, at `http://router`. `raise_app_exceptions`:
    False to get the 500 a client would see instead of the app's exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://router", timeout=timeout, **client_options)


class Apps:
    """Apps and clients for one test, every client closed by `aclose` (the `apps` fixture).

    Each app gets its own upstream `httpx.AsyncClient`, so respx intercepts its requests."""

    def __init__(self) -> None:
        self._opened: list[httpx.AsyncClient] = []

    def app(self, rules: dict[str, Any], **options: Any) -> RouterApp:
        """`build_app(rules, **options)` with a new upstream client."""
        upstream = httpx.AsyncClient()
        self._opened.append(upstream)
        return build_app(rules, client=upstream, **options)

    def client(self, app: Any, **options: Any) -> httpx.AsyncClient:
        """`asgi_client(app, **options)`, closed with the others."""
        client = asgi_client(app, **options)
        self._opened.append(client)
        return client

    async def aclose(self) -> None:
        for client in self._opened:
            await client.aclose()


def production_client() -> httpx.AsyncClient:
    """The upstream client the router builds for itself (its TLS, pool and timeout settings)."""
    return make_http_client(app_settings())


class ClosesOnShutdown:
    """ASGI wrapper: answers lifespan itself; at shutdown, inside the server's event loop (where
    their connections live), drains the app's pending work and closes its upstream client and
    its store."""

    def __init__(self, app: RouterApp) -> None:
        self.app = app
        self.gateway = app.state.gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.drain()
                await self.gateway.client.aclose()
                await self.gateway.store.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


@contextlib.contextmanager
def serve_in_thread(app: RouterApp) -> Iterator[str]:
    """Serve `app` under uvicorn on 127.0.0.1; yields its URL; stops it (and closes what the
    app holds) on exit."""
    with run_uvicorn_in_thread(ClosesOnShutdown(app), lifespan="on") as url:
        yield url
