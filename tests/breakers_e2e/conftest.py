"""Circuit breakers end to end: real sockets on 127.0.0.1, real fakes, the real OpenAI SDK.

The fake providers (the root conftest's `fakes`: two OpenAI-compatible ones, A and B, and an
Anthropic one) run once per session under uvicorn in threads; each is reset (mode ok, empty
stats) before every test. Tier `fast` = [a, b] (the default): model `a` on provider
`provider-a` (fake A), model `b` on `provider-b` (fake B); tier `mixed` = [c, b], model `c`
on `provider-c` (the Anthropic fake). Every provider reads its key from `FAKE_KEY`.

Routers come from factories, so every test chooses its own breaker settings and store:
- `start_router(rules, store_url)` — the app from `create_app`, under uvicorn in a thread
  (with the production upstream client);
- `test_shared_state.py` starts `tier-router serve` processes itself.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest

from tests.support.clients import async_client, sync_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread

KEY_ENV = "FAKE_KEY"
KEY_VALUE = "sk-breakers-e2e-SECRET999"
SDK_TIMEOUT_S = 15.0
TIMEOUTS: dict[str, float] = {"connect": 1.0, "read": 3.0, "total": 3.0, "first_token": 3.0, "stall": 1.0}
# What the brief asks for: 3 failures within 30 s open a breaker, 1 s later one probe goes through.
FAST_BREAKERS: dict[str, Any] = {"failure_threshold": 3, "window_s": 30, "recovery_s": 1.0, "cache_ttl_s": 0}


# ----------------------------------------------------------------------------- rules


def rules_doc(
    a_url: str,
    b_url: str,
    c_url: str,
    *,
    breakers: dict[str, Any] | None = None,
    timeouts_a: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The rules file (as a dict): tiers `fast` = [a, b] and `mixed` = [c, b], keys from FAKE_KEY."""

    def provider(base_url: str, timeouts: dict[str, float], kind: str = "openai") -> dict[str, Any]:
        # No same-model retries: these tests count one failure per request to see a breaker
        # open at its threshold (retries are tests/resilience/test_retry_and_context.py's).
        no_retry = {"max_attempts": 1}
        return {
            "kind": kind,
            "base_url": base_url,
            "api_key_env": KEY_ENV,
            "timeouts": timeouts,
            "retry": no_retry,
        }

    price = {"input": 1.0, "output": 2.0}
    return {
        "version": 1,
        "providers": {
            "provider-a": provider(a_url + "/v1", dict(timeouts_a or TIMEOUTS)),
            "provider-b": provider(b_url + "/v1", dict(TIMEOUTS)),
            "provider-c": provider(c_url, dict(TIMEOUTS), kind="anthropic"),
        },
        "models": {
            "a": {"provider": "provider-a", "id": "gpt-a", "price": price},
            "b": {"provider": "provider-b", "id": "gpt-b", "price": price},
            "c": {"provider": "provider-c", "id": "claude-c", "price": price, "max_output": 1024},
        },
        "tiers": {"fast": ["a", "b"], "mixed": ["c", "b"]},
        "default_tier": "fast",
        "breakers": copy.deepcopy(FAST_BREAKERS if breakers is None else breakers),
    }


@pytest.fixture
def make_rules(fakes: FakeProviders) -> Callable[..., dict[str, Any]]:
    """`make_rules(breakers=..., a_url=..., timeouts_a=...)`: rules on the running fakes."""

    def make(
        *,
        breakers: dict[str, Any] | None = None,
        a_url: str | None = None,
        timeouts_a: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        return rules_doc(
            a_url or fakes.a.url, fakes.b.url, fakes.anthropic.url, breakers=breakers, timeouts_a=timeouts_a
        )

    return make


def wait_out_window_edge(window_s: float, margin_s: float = 1.5) -> None:
    """Failures are counted in buckets of `window_s` (aligned to multiples of it), the previous
    bucket's weighted by its overlap with the rolling window: failures just before an edge count
    a little under 1 each just after it, so exactly THRESHOLD of them straddling an edge may not
    open the breaker. Sleep past an edge that is near."""
    now = time.time()
    edge = (math.floor(now / window_s) + 1) * window_s
    if edge - now < margin_s:
        time.sleep(edge - now + 0.05)


@pytest.fixture
def avoid_window_edge() -> Callable[[float], None]:
    return wait_out_window_edge


# ----------------------------------------------------------------------------- routers


@dataclass
class Router:
    """A running router and the clients that talk to it."""

    url: str
    http: httpx.Client

    def sdk(self) -> openai.OpenAI:
        return sync_client(self.url, "unused", SDK_TIMEOUT_S)

    def async_sdk(self) -> openai.AsyncOpenAI:
        """Create inside the test's event loop (its connections belong to that loop)."""
        return async_client(self.url, "unused", SDK_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        response = self.http.get(self.url + "/v1/router/status")
        response.raise_for_status()
        return response.json()

    def breaker(self, model: str = "a") -> dict[str, str]:
        """{"provider": state, "model": state} of one model, as /v1/router/status reports it."""
        return self.status()["breakers"][model]

    def post_fresh(self, text: str = "hello") -> httpx.Response:
        """One chat request on a new connection (so a multi-worker server may hand it to any worker)."""
        with httpx.Client(timeout=SDK_TIMEOUT_S) as fresh:
            return fresh.post(
                self.url + "/v1/chat/completions",
                json={"model": "fast", "messages": [{"role": "user", "content": text}]},
            )


@pytest.fixture
def start_router() -> Iterator[Callable[[dict[str, Any], str], Router]]:
    """`start_router(rules, store_url)`: the app under uvicorn in a thread, stopped after the test."""
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(httpx.Client(timeout=SDK_TIMEOUT_S))

        def start(rules: dict[str, Any], store_url: str) -> Router:
            app = build_app(
                rules,
                settings=app_settings(store_url=store_url, log_requests=False),
                keys={KEY_ENV: KEY_VALUE},
                client=production_client(),
            )
            return Router(stack.enter_context(serve_in_thread(app)), http)

        yield start
