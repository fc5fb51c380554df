"""The state store fails or slows down: what each feature promises (docs/guarantees.md).

Every test plugs a `Faulty` store (`tests.support.stores`) into `create_app(..., store=...)`:
"down" raises `StoreUnavailable` on every call, "slow" sleeps before every call.

Measured bound for a slow store (0.3 s per call): one request costs `store calls x store
latency` on top of the upstream time. With every feature configured (rate limit, budget,
cache, breakers) that is at most 8 store calls on a cold process (5 before forwarding, 3
settling afterwards), fewer once breaker and pacing reads are cached. Every call has a
deadline (`TIER_ROUTER_STORE_TIMEOUT_S`), so a store that never answers cannot hold a request:
`test_a_hung_store_does_not_hang_requests`.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
import respx

pytestmark = pytest.mark.anyio

ALL_FEATURES: dict[str, Any] = {
    "limits": {"requests_per_minute": 1000},
    "budgets": {"daily_usd": 100},
    "cache": {"enabled": True},
}


async def test_breakers_fail_open_requests_still_forwarded(
    make_router, faulty_store, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    store = faulty_store("down")
    router = make_router(store=store)
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    for _ in range(3):
        response = await router.post("/v1/chat/completions", json=chat())
        assert response.status_code == 200, response.text
        assert response.headers["x-router-model"] == "primary"
    assert primary.call_count == 3
    assert store.calls["get_many"] >= 1  # the breaker read was attempted, and failed


async def test_failures_with_store_down_still_fall_back_and_never_open_a_breaker(
    make_router, faulty_store, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    """Breaker failure writes fail too: the primary keeps being tried (fail open = closed),
    and every request is still served by the fallback."""
    router = make_router(rules=None, store=faulty_store("down"))
    primary = upstream.post(urls["primary"]).respond(503, json={"error": {"message": "down"}})
    upstream.post(urls["backup"]).respond(200, json=completion(model="gpt-b"))
    for _ in range(8):  # 16 failures (each 503 is retried once): more than failure_threshold (5)
        response = await router.post("/v1/chat/completions", json=chat())
        assert response.status_code == 200, response.text
        assert response.headers["x-router-model"] == "secondary"
    assert primary.call_count == 16


@pytest.mark.usefixtures("rate_window")
async def test_rate_limits_fail_open(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    upstream.post(urls["primary"]).respond(200, json=completion())
    rules = rules_dict(limits={"requests_per_minute": 1})
    # Control: with a healthy store the limit is real.
    healthy = make_router(rules=rules, store=faulty_store("ok"))
    assert (await healthy.post("/v1/chat/completions", json=chat())).status_code == 200
    assert (await healthy.post("/v1/chat/completions", json=chat())).status_code == 429
    # Store down: the limiter lets everything through.
    broken = make_router(rules=rules, store=faulty_store("down"))
    for _ in range(4):
        response = await broken.post("/v1/chat/completions", json=chat())
        assert response.status_code == 200, response.text


async def test_response_cache_is_skipped(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    rules = rules_dict(cache={"enabled": True})
    body = chat("What is 2+2?", temperature=0)
    healthy = make_router(rules=rules, store=faulty_store("ok"))
    await healthy.post("/v1/chat/completions", json=body)
    hit = await healthy.post("/v1/chat/completions", json=body)
    assert hit.headers["x-router-cache"] == "hit"  # control: the cache works
    assert primary.call_count == 1

    broken = make_router(rules=rules, store=faulty_store("down"))
    for _ in range(3):
        response = await broken.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.headers.get("x-router-cache") != "hit"
    assert primary.call_count == 4  # every request went upstream


async def test_ledger_write_failure_does_not_fail_the_request(
    make_router, faulty_store, upstream: respx.MockRouter, urls, chat, completion, caplog
) -> None:
    store = faulty_store("down")
    router = make_router(store=store)
    upstream.post(urls["primary"]).respond(200, json=completion())
    response = await router.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Hello there"
    assert "x-router-cost-usd" in response.headers
    assert store.calls["get"] >= 1  # the ledger write was attempted: its day's layout first (spend.layout)
    assert any("ledger write failed" in r.getMessage() for r in caplog.records)
    # The status endpoint, which only reads the store, says so instead of inventing numbers.
    status = await router.get("/v1/router/status")
    assert status.status_code == 503
    assert status.json()["error"]["code"] == "store_unavailable"


async def test_budget_default_allow_lets_requests_through(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    router = make_router(rules=rules_dict(budgets={"daily_usd": 1}), store=faulty_store("down"))
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    for _ in range(3):
        response = await router.post("/v1/chat/completions", json=chat())
        assert response.status_code == 200, response.text
    assert primary.call_count == 3


async def test_budget_reject_refuses_with_openai_style_503(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    rules = rules_dict(budgets={"daily_usd": 1, "on_store_error": "reject"})
    router = make_router(rules=rules, store=faulty_store("down"))
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    response = await router.post("/v1/chat/completions", json=chat())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert isinstance(error["message"], str)
    assert error["message"]
    assert {"message", "type", "param", "code"} <= set(error)
    assert primary.call_count == 0  # nothing was spent
    # Same rules with a healthy store: served.
    healthy = make_router(rules=rules, store=faulty_store("ok"))
    assert (await healthy.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_readyz_reports_the_store_while_healthz_stays_up(make_router, faulty_store) -> None:
    router = make_router(store=faulty_store("down"))
    ready = await router.get("/readyz")
    assert ready.status_code == 503
    assert any("state store unreachable" in p for p in ready.json()["problems"])
    health = await router.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    # and a healthy store is ready
    ok = make_router(store=faulty_store("ok"))
    assert (await ok.get("/readyz")).status_code == 200


async def test_everything_configured_and_store_down_still_serves(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    router = make_router(rules=rules_dict(**ALL_FEATURES), store=faulty_store("down"))
    upstream.post(urls["primary"]).respond(200, json=completion())
    for body in (chat(), chat(temperature=0), chat(temperature=0)):
        response = await router.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text


async def test_slow_store_costs_at_most_calls_times_latency(
    make_router, faulty_store, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    """0.3 s per store call, every feature on: the request finishes, in at most
    8 calls x 0.3 s (+ slack), plus the day's layout on the first request of a budget day
    (`spend.layout`: 3 calls for the day's first writer); the documented bound."""
    delay = 0.3
    store = faulty_store("slow", delay_s=delay)
    router = make_router(rules=rules_dict(**ALL_FEATURES), store=store)
    upstream.post(urls["primary"]).respond(200, json=completion())
    started = time.perf_counter()
    response = await router.post("/v1/chat/completions", json=chat(temperature=0))
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    calls = sum(store.calls.values())
    assert calls <= 8 + 3, dict(store.calls)
    assert elapsed <= (8 + 3) * delay + 0.5, (elapsed, dict(store.calls))


async def test_a_hung_store_does_not_hang_requests(
    make_router, faulty_store, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    """BUG (fails today): the router has no deadline on store calls, so a store that stops
    answering (a black-holed endpoint, a wedged SQLite lock holder) holds every request
    forever — contrary to "a broken state store must never take the gateway down".
    Expected: breakers fail open within a short store deadline and the request is served."""
    store = faulty_store("slow", delay_s=3600)
    router = make_router(store=store)
    upstream.post(urls["primary"]).respond(200, json=completion())
    response: httpx.Response | None = None
    with anyio.move_on_after(3):
        response = await router.post("/v1/chat/completions", json=chat())
    assert response is not None, "request still waiting on the store after 3 s"
    assert response.status_code == 200
