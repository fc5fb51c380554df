"""Integration stack: real sockets end to end, driven by the real OpenAI SDK.

Started once per session on 127.0.0.1, each under real uvicorn in a thread:

- fake OpenAI-compatible upstream "A" (provider ``openai-a``, model ``model-a`` → ``gpt-a-2025``),
- fake OpenAI-compatible upstream "B" (provider ``openai-b``, model ``model-b`` → ``gpt-b-mini``),
- fake Anthropic upstream (provider ``anthropic``, model ``claude`` → ``claude-test-1``),
- the router app itself (``create_app``), router auth on (``rk-test``).

Tiers: ``fast`` = [model-a, model-b] (the default), ``smart`` = [claude, model-b] (rule
``needs-thinking``: the last user message mentions "prove"), ``claude-only`` = [claude],
alias ``gpt-4o`` → fast. Every provider has small timeouts (see ``TIMEOUTS``).

Circuit breakers are on (as in production) with a fresh in-memory state store per test.
Every fake is reset (``POST /_control {"reset": true}``) before each test. Helpers are
fixtures or attributes of the ``stack`` fixture, never imports: test modules do not depend
on how pytest names this package under ``--import-mode=importlib``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tier_router.app import create_app
from tier_router.gateway import make_http_client
from tier_router.provider_keys import KeySource
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.fakes.server import run_uvicorn_in_thread
from tests.fakes.upstream import make_fake_upstream

ROUTER_KEY = "rk-test"
PROVIDER_KEYS: dict[str, str] = {
    "OPENAI_A_KEY": "sk-int-a-SECRET111",
    "OPENAI_B_KEY": "sk-int-b-SECRET222",
    "ANTHROPIC_KEY": "sk-ant-int-SECRET333",
}
TIMEOUTS: dict[str, float] = {
    "connect": 1.0,
    "read": 2.0,
    "total": 2.0,  # a whole non-streamed attempt
    "first_token": 1.5,  # a stream's first content
    "stall": 0.5,  # any later gap in a stream (smaller than first_token, so `drip` can test it)
}
SDK_TIMEOUT_S = 15.0
BREAKER_THRESHOLD = 5  # failures of one model (or provider) within 30 s that open its breaker


def rules_for(a_url: str, b_url: str, anthropic_url: str) -> dict[str, Any]:
    def provider(kind: str, base_url: str, key_env: str) -> dict[str, Any]:
        return {"kind": kind, "base_url": base_url, "api_key_env": key_env, "timeouts": dict(TIMEOUTS)}

    return {
        "version": 1,
        "providers": {
            "openai-a": provider("openai", a_url + "/v1", "OPENAI_A_KEY"),
            "openai-b": provider("openai", b_url + "/v1", "OPENAI_B_KEY"),
            "anthropic": provider("anthropic", anthropic_url, "ANTHROPIC_KEY"),
        },
        "models": {
            "model-a": {"provider": "openai-a", "id": "gpt-a-2025", "price": {"input": 1.0, "output": 4.0}},
            "model-b": {"provider": "openai-b", "id": "gpt-b-mini", "price": {"input": 0.2, "output": 0.8}},
            "claude": {
                "provider": "anthropic",
                "id": "claude-test-1",
                "price": {"input": 3.0, "output": 15.0},
                "max_output": 1024,
            },
        },
        "tiers": {
            "fast": ["model-a", "model-b"],
            "smart": ["claude", "model-b"],
            "claude-only": ["claude"],
        },
        "default_tier": "fast",
        "aliases": {"gpt-4o": "fast"},
        # Breakers on, as in production, but read from the store on every request: each test
        # gets a fresh store (see `FreshStore`), so one test's failures never open another's.
        "breakers": {"enabled": True, "failure_threshold": BREAKER_THRESHOLD, "cache_ttl_s": 0},
        "rules": [
            {
                "name": "needs-thinking",
                "tier": "smart",
                "when": {"last_user_matches": {"pattern": r"\bprove\b", "ignore_case": True}},
            }
        ],
    }


@dataclass
class Fake:
    """One fake upstream under uvicorn, and its control API."""

    name: str
    url: str
    http: httpx.Client

    def control(self, **faults: Any) -> None:
        """Replace the fault config (stats are kept); see `tests.fakes.upstream.Faults`."""
        self.http.post(self.url + "/_control", json=faults).raise_for_status()

    def reset(self) -> None:
        self.http.post(self.url + "/_control", json={"reset": True}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = self.http.get(self.url + "/_stats")
        response.raise_for_status()
        return response.json()

    @property
    def requests(self) -> int:
        return int(self.stats()["requests"])

    @property
    def last(self) -> dict[str, Any]:
        """The last provider request this fake received (method, path, headers, parsed body)."""
        last = self.stats()["last_request"]
        assert last is not None, f"{self.name} received no request"
        return last

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 3.0) -> dict[str, Any]:
        """Poll `/_stats` until `predicate(stats)` holds; the last stats either way."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if predicate(stats) or time.monotonic() > deadline:
                return stats
            time.sleep(0.02)


@dataclass
class Stack:
    a: Fake
    b: Fake
    anthropic: Fake
    router_url: str
    http: httpx.Client
    store: FreshStore
    router_key: str = ROUTER_KEY
    breaker_threshold: int = BREAKER_THRESHOLD
    keys: dict[str, str] = field(default_factory=lambda: dict(PROVIDER_KEYS))

    @property
    def fakes(self) -> tuple[Fake, Fake, Fake]:
        return (self.a, self.b, self.anthropic)

    def sdk(self, api_key: str = ROUTER_KEY) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.router_url + "/v1", api_key=api_key, max_retries=0, timeout=SDK_TIMEOUT_S
        )

    def async_sdk(self, api_key: str = ROUTER_KEY) -> openai.AsyncOpenAI:
        """Create inside the test's event loop (its connections belong to that loop)."""
        return openai.AsyncOpenAI(
            base_url=self.router_url + "/v1", api_key=api_key, max_retries=0, timeout=SDK_TIMEOUT_S
        )


class FreshStore:
    """The router's state store, swappable per test: delegates to `inner`, a new MemoryStore
    before each test, so circuit-breaker state never leaks from one test into the next."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def renew(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class ClosesClientOnShutdown:
    """ASGI wrapper: answers lifespan itself and closes the router's upstream client on
    shutdown, inside the server's event loop (where its connections live)."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _stack() -> Iterator[Stack]:
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=5.0))
        a_url = stack.enter_context(run_uvicorn_in_thread(make_fake_upstream("openai", name="fake-a")))
        b_url = stack.enter_context(run_uvicorn_in_thread(make_fake_upstream("openai", name="fake-b")))
        an_url = stack.enter_context(
            run_uvicorn_in_thread(make_fake_upstream("anthropic", name="fake-anthropic"))
        )
        client = make_http_client(
            Settings(rules_path=Path("rules.yaml"))
        )  # the production client configuration
        store = FreshStore()
        app = create_app(
            Settings(
                rules_path=Path("integration-rules.yaml"), store_url="memory://", api_keys=(ROUTER_KEY,)
            ),
            rules=parse_rules(rules_for(a_url, b_url, an_url), "integration-rules.yaml"),
            client=client,
            keys=KeySource(dict(PROVIDER_KEYS)),
            store=store,
        )
        router_url = stack.enter_context(run_uvicorn_in_thread(ClosesClientOnShutdown(app, client)))
        yield Stack(
            a=Fake("fake-a", a_url, http),
            b=Fake("fake-b", b_url, http),
            anthropic=Fake("fake-anthropic", an_url, http),
            router_url=router_url,
            http=http,
            store=store,
        )


@pytest.fixture
def stack(_stack: Stack) -> Stack:
    """The running stack, every fake reset (mode ok, empty stats), every breaker closed."""
    for fake in _stack.fakes:
        fake.reset()
    _stack.store.renew()
    return _stack


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    """A sync OpenAI SDK client on the router, with the right router key and no SDK retries."""
    with stack.sdk() as sdk:
        yield sdk
