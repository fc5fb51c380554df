"""Spend control through the HTTP API: the real app in-process, providers faked with respx.

Every router built here runs all its spend components — rate limiter, budget guard, ledger,
response cache — and its store on ONE fake clock (`clock`, noon UTC on a fixed day), so
time-of-day pacing, per-minute windows, budget days and cache TTLs are deterministic and
no test sleeps. Breakers are off in these rules (they are not what is under test, and
they use the real clock).

Providers: one OpenAI-compatible provider per tier, on its own host, so a test can tell
from respx which tier's model was actually called, plus an Anthropic-kind provider:

    tier      model   provider host         price $/1M tokens (input / output / cached input)
    premium   big     premium.test          2.5 / 10 / 1.25
    standard  mid     standard.test         1.0 / 4.0 / -
    budget    small   budget.test           0.028 / 0.042 / -
    smart     claude  anthropic.test        3 / 15 / 0.3 (Anthropic Messages API)
    duo       [mid, small]                  a two-model chain
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from starlette.applications import Starlette
from tier_router.gateway import Gateway
from tier_router.spend import BudgetGuard, RateLimiter, ResponseCache, SpendLedger
from tier_router.spend.counters import day_key
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.openai_bodies import completion, encode_sse, sse_response
from tests.support.openai_bodies import usage as usage_of
from tests.support.router_app import Apps, app_settings
from tests.support.rules import with_sections

NOON = at(2031, 5, 20, 12)
"""The fake clock's start: half of the budget day (day_start_hour 0) has passed."""

URLS = {
    "premium": "https://premium.test/v1/chat/completions",
    "standard": "https://standard.test/v1/chat/completions",
    "budget": "https://budget.test/v1/chat/completions",
    "anthropic": "https://anthropic.test/v1/messages",
}
MODEL_IDS = {"premium": "big-1", "standard": "mid-1", "budget": "small-1"}

PROVIDER_KEYS = {
    "PREMIUM_KEY": "sk-premium-SECRET1",
    "STANDARD_KEY": "sk-standard-SECRET2",
    "BUDGET_KEY": "sk-budget-SECRET3",
    "ANTHROPIC_KEY": "sk-ant-SECRET4",
}
ROUTER_KEYS = {"team-a": "rk-secret-a", "team-b": "rk-secret-b"}
"""Router key id -> secret (`Settings.api_keys` entries are `id=secret`)."""

BASE_RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "p-premium": {"kind": "openai", "base_url": "https://premium.test/v1", "api_key_env": "PREMIUM_KEY"},
        "p-standard": {
            "kind": "openai",
            "base_url": "https://standard.test/v1",
            "api_key_env": "STANDARD_KEY",
        },
        "p-budget": {"kind": "openai", "base_url": "https://budget.test/v1", "api_key_env": "BUDGET_KEY"},
        "p-anthropic": {
            "kind": "anthropic",
            "base_url": "https://anthropic.test",
            "api_key_env": "ANTHROPIC_KEY",
        },
    },
    "models": {
        "big": {
            "provider": "p-premium",
            "id": "big-1",
            "price": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
        },
        "mid": {"provider": "p-standard", "id": "mid-1", "price": {"input": 1.0, "output": 4.0}},
        "small": {"provider": "p-budget", "id": "small-1", "price": {"input": 0.028, "output": 0.042}},
        "claude": {
            "provider": "p-anthropic",
            "id": "claude-t",
            "price": {"input": 3.0, "output": 15.0, "cached_input": 0.3},
            "max_output": 4096,
        },
    },
    "tiers": {
        "premium": ["big"],
        "standard": ["mid"],
        "budget": ["small"],
        "smart": ["claude"],
        "duo": ["mid", "small"],
    },
    "default_tier": "standard",
    "breakers": {"enabled": False},
    "rules": [
        {"name": "deep", "tier": "premium", "when": {"last_user_matches": {"pattern": "prove"}}},
    ],
}


BUDGET_FIELDS = {"committed", "spent", "unsettled", "unheld", "swept"}
BUDGET_PREFIXES = ("h.", "t.", "kc.", "ks.", "ku.")


@dataclass
class Router:
    """One app, the httpx client talking to it, and the store/clock under it."""

    app: Starlette
    client: httpx.AsyncClient
    store: Store
    clock: FakeClock

    @property
    def gateway(self) -> Gateway:
        return self.app.state.gateway

    @property
    def day(self) -> str:
        return day_key(self.clock())

    async def chat(
        self,
        text: str = "Say hi",
        *,
        model: str = "auto",
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> httpx.Response:
        """POST one chat request; `key` is a router key id (team-a/team-b), sent as its secret."""
        body = {"model": model, "messages": [{"role": "user", "content": text}], **fields}
        sent = dict(headers or {})
        if key is not None:
            sent["authorization"] = f"Bearer {ROUTER_KEYS[key]}"
        return await self.client.post("/v1/chat/completions", json=body, headers=sent)

    async def status(self, key: str | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {ROUTER_KEYS[key]}"} if key else {}
        response = await self.client.get("/v1/router/status", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def budget_item(self) -> dict[str, Any]:
        """The budget's fields of the day item the guard reserves against and pacing reads
        (the item also holds the ledger's counters, `spend.shards`: left out here)."""
        item = await self.store.get(f"spend:{self.day}") or {}
        return {k: v for k, v in item.items() if k in BUDGET_FIELDS or k.startswith(BUDGET_PREFIXES)}

    async def set_spent(self, micro: int) -> None:
        """Pre-load today's global spend (as if earlier requests had settled)."""
        await self.store.put(
            f"spend:{self.day}", {"committed": micro, "spent": micro}, expires_at=self.clock() + 86_400
        )

    async def drain(self) -> None:
        """Wait for every request's settle (the lifecycle finishes requests after responding)."""
        await self.gateway.lifecycle.drainer.drain()


@dataclass
class Upstream:
    """The respx router plus one route per provider host. Each OpenAI route answers
    `reply(tier)` (usage 10 in / 5 out) until a test mocks it otherwise."""

    mock: respx.MockRouter
    routes: dict[str, respx.Route] = field(default_factory=dict)

    def __getattr__(self, name: str) -> respx.Route:
        routes = self.__dict__.get("routes", {})
        if name in routes:
            return routes[name]
        raise AttributeError(name)

    @staticmethod
    def reply(
        tier: str,
        text: str | None = None,
        usage: dict[str, Any] | None = None,
        *,
        finish: str = "stop",
        no_usage: bool = False,
    ) -> httpx.Response:
        """A 200 chat.completion from `tier`'s model (default usage: 10 prompt, 5 completion)."""
        model = MODEL_IDS[tier]
        return httpx.Response(
            200,
            json=completion(
                text if text is not None else f"answer from {model}",
                model,
                usage=False if no_usage else (usage or usage_of(10, 5)),
                finish=finish,
            ),
        )

    @staticmethod
    def sse(events: list[dict[str, Any]], *, done: bool = True) -> httpx.Response:
        return sse_response(encode_sse(events, done=done))

    @staticmethod
    def sse_raw(text: str) -> httpx.Response:
        return sse_response(text.encode())

    def called_model(self) -> list[str]:
        """The `model` field of every upstream request, in order."""
        return [json.loads(call.request.content).get("model", "") for call in self.mock.calls]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOON)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """Every provider, mocked; unmocked URLs fail the request."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        up = Upstream(mock)
        for tier in MODEL_IDS:
            up.routes[tier] = mock.post(URLS[tier], name=tier).mock(return_value=Upstream.reply(tier))
        up.routes["anthropic"] = mock.post(URLS["anthropic"], name="anthropic")
        yield up


@pytest.fixture
def rules_dict() -> Callable[..., dict[str, Any]]:
    """`rules_dict(budgets={...}, limits={...}, cache={...}, ...)` → a fresh copy of the base
    rules with those top-level sections set."""

    return functools.partial(with_sections, BASE_RULES)


@pytest.fixture
async def make_router(apps: Apps, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Callable[..., Router]]:
    """`make_router(rules_dict, store="memory"|"sqlite"|<Store>, auth=True, pacing_ttl_s=0.0)`.

    `auth=True` requires the router keys team-a / team-b. `pacing_ttl_s` is how stale the
    guard's view of today's spend may be (0: re-read on every request, so a test may write
    the budget item between requests; production uses 1 s).
    """
    stores: list[Store] = []

    def make(
        rules: dict[str, Any],
        *,
        store: str | Store = "memory",
        auth: bool = True,
        pacing_ttl_s: float = 0.0,
    ) -> Router:
        if isinstance(store, str):
            if store == "memory":
                store = MemoryStore(clock=clock)
            elif store == "sqlite":
                store = SQLiteStore(tmp_path / f"state-{len(stores)}.db", clock=clock)
            else:
                raise ValueError(store)
        stores.append(store)
        settings = app_settings(
            store_url="memory://",
            api_keys=tuple(f"{kid}={secret}" for kid, secret in ROUTER_KEYS.items()) if auth else (),
            log_requests=False,
        )
        app = apps.app(rules, settings=settings, keys=PROVIDER_KEYS, store=store)
        # Every spend component on the fake clock (same construction as SpendControls.__init__).
        spend, parsed = app.state.gateway.spend, app.state.gateway.rules
        spec = parsed.spec
        if spend.limiter is not None:
            spend.limiter = RateLimiter(store, spec.limits, clock=clock)
        if spend.guard is not None:
            spend.guard = BudgetGuard(
                store, spec.budgets, clock=clock, cache_ttl_s=pacing_ttl_s, tiers=set(parsed.tiers)
            )
        spend.ledger = SpendLedger(
            store,
            retention_days=spec.budgets.retention_days,
            day_start_hour=spec.budgets.day_start_hour,
            clock=clock,
        )
        if spend.cache is not None:
            spend.cache = ResponseCache(store, max_item_bytes=spec.cache.max_item_bytes, clock=clock)
        return Router(app, apps.client(app, timeout=30.0), store, clock)

    yield make
    for s in stores:
        await s.aclose()


@pytest.fixture
def usage() -> Callable[..., dict[str, Any]]:
    """`usage(prompt, completion, cached_tokens=..., cache_write_tokens=...)` → OpenAI usage."""
    return usage_of
