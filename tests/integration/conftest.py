"""Integration stack: real sockets end to end, driven by the real OpenAI SDK.

Started once per session on 127.0.0.1, each under real uvicorn in a thread:

- the fake providers (the root conftest's `fakes`): OpenAI-compatible "A" (provider
  ``openai-a``, model ``model-a`` → ``gpt-a-2025``), OpenAI-compatible "B" (provider
  ``openai-b``, model ``model-b`` → ``gpt-b-mini``), Anthropic (provider ``anthropic``, model
  ``claude`` → ``claude-test-1``),
- the router app itself (``create_app``, the production upstream client), router auth on
  (``rk-test``).

Tiers: ``fast`` = [model-a, model-b] (the default), ``smart`` = [claude, model-b] (rule
``needs-thinking``: the last user message mentions "prove"), ``claude-only`` = [claude],
alias ``gpt-4o`` → fast (`tests.support.rules.three_providers`). Every provider has small
timeouts (see ``TIMEOUTS``).

Circuit breakers are on (as in production) with a fresh in-memory state store per test.
Every fake is reset before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from tier_router.store.memory import MemoryStore

from tests.support.clients import async_client, sync_client
from tests.support.fake_providers import Fake, FakeProviders
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread
from tests.support.rules import KEYS, three_providers

ROUTER_KEY = "rk-test"
TIMEOUTS: dict[str, float] = {
    "connect": 1.0,
    "read": 2.0,
    "total": 2.0,  # a whole non-streamed attempt
    "first_token": 1.5,  # a stream's first content
    "stall": 0.5,  # any later gap in a stream (smaller than first_token, so `drip` can test it)
}
SDK_TIMEOUT_S = 15.0
BREAKER_THRESHOLD = 5  # failures of one model (or provider) within 30 s that open its breaker


def rules_for(fakes: FakeProviders) -> dict[str, Any]:
    return three_providers(
        fakes.a.url + "/v1",
        fakes.b.url + "/v1",
        fakes.anthropic.url,
        models=("model-a", "model-b", "claude"),
        timeouts=TIMEOUTS,
        # Breakers on, as in production, but read from the store on every request: each test
        # gets a fresh store (see `FreshStore`), so one test's failures never open another's.
        breakers={"enabled": True, "failure_threshold": BREAKER_THRESHOLD, "cache_ttl_s": 0},
    )


@dataclass
class Stack:
    fakes: FakeProviders
    router_url: str
    http: httpx.Client
    store: FreshStore
    router_key: str = ROUTER_KEY
    breaker_threshold: int = BREAKER_THRESHOLD
    keys: dict[str, str] = field(default_factory=lambda: dict(KEYS))

    @property
    def a(self) -> Fake:
        return self.fakes.a

    @property
    def b(self) -> Fake:
        return self.fakes.b

    @property
    def anthropic(self) -> Fake:
        return self.fakes.anthropic

    def sdk(self, api_key: str = ROUTER_KEY) -> openai.OpenAI:
        return sync_client(self.router_url, api_key, SDK_TIMEOUT_S)

    def async_sdk(self, api_key: str = ROUTER_KEY) -> openai.AsyncOpenAI:
        """Create inside the test's event loop (its connections belong to that loop)."""
        return async_client(self.router_url, api_key, SDK_TIMEOUT_S)


class FreshStore:
    """The router's state store, swappable per test: delegates to `inner`, a new MemoryStore
    before each test, so circuit-breaker state never leaks from one test into the next."""

    def __init__(self) -> None:
        self.inner = MemoryStore()

    def renew(self) -> None:
        self.inner = MemoryStore()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(scope="session")
def _stack(_fake_providers: FakeProviders) -> Iterator[Stack]:
    store = FreshStore()
    app = build_app(
        rules_for(_fake_providers),
        settings=app_settings(store_url="memory://", api_keys=(ROUTER_KEY,)),
        keys=KEYS,
        client=production_client(),
        store=store,
    )
    with httpx.Client(timeout=5.0) as http, serve_in_thread(app) as router_url:
        yield Stack(_fake_providers, router_url, http, store)


@pytest.fixture
def stack(_stack: Stack, fakes: FakeProviders) -> Stack:
    """The running stack, every fake reset (mode ok, empty stats), every breaker closed."""
    _stack.store.renew()
    return _stack


@pytest.fixture
def client(stack: Stack) -> Iterator[openai.OpenAI]:
    """A sync OpenAI SDK client on the router, with the right router key and no SDK retries."""
    with stack.sdk() as sdk:
        yield sdk
