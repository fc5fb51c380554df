"""Adversary (issue 18): the reservation bound through the app with the day sharded. `n: 8` and a
40 KB tool-call history (`test_cap_bound`'s requests, billed honestly and slowly so reservations
overlap) against a global cap spread over 3 and 7 shards, on the default local store (SQLite):
the served costs, summed over the shards, never pass the cap, and the shards sum exactly to
what was served (the ledger's `total` and the budget's `spent` alike)."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tier_router.spend.counters import day_key
from tier_router.spend.shards import day_items, summed
from tier_router.store.sqlite import SQLiteStore

from tests.resilience.test_cap_bound import CONCURRENCY, honest_usage, n8, tool_history
from tests.support import openai_bodies

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("shards", [3, 7])
@pytest.mark.parametrize(
    ("request_body", "cap_usd"),
    [(n8, 0.05), (tool_history, 0.5)],
    ids=["n8", "40KB-tool-history"],
)
async def test_sharded_cap_is_never_passed_by_requests_at_the_reservation_bound(
    make_router: Any,
    rules_dict: Any,
    upstream: respx.MockRouter,
    urls: dict[str, str],
    tmp_path: Path,
    request_body: Any,
    cap_usd: float,
    shards: int,
) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    cap_usd *= shards  # each shard has room for what one shard had in test_cap_bound
    cap = round(cap_usd * 1_000_000)
    calls = 0

    async def bill(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # hold every reservation while the others arrive
        body = json.loads(request.content)
        return httpx.Response(200, json=openai_bodies.completion(usage=honest_usage(body)))

    upstream.post(urls["primary"]).mock(side_effect=bill)
    rules = rules_dict(budgets={"daily_usd": cap_usd, "pacing": {"enabled": False}, "shards": shards})
    rules["tiers"]["fast"] = ["primary"]
    router = make_router(rules=rules, store=store)

    responses = await asyncio.gather(
        *(router.post("/v1/chat/completions", json=request_body()) for _ in range(CONCURRENCY))
    )
    ok = [r for r in responses if r.status_code == 200]
    for r in responses:
        assert r.status_code in (200, 429), r.text
    assert ok, "nothing was served: the test does not exercise billing"
    assert len(ok) < CONCURRENCY, "the cap never refused anything: the test does not exercise it"
    await asyncio.sleep(0.3)  # settles run in tasks the client cannot cancel
    costs = [int(Decimal(r.headers["x-router-cost-usd"]) * 1_000_000) for r in ok]
    assert sum(costs) <= cap
    values = await store.get_many(day_items("spend:", day_key(time.time()), shards))
    assert len(values) > 1  # the load did spread over the shards
    sums = summed(values.values(), ["spent", "committed", "total", "requests"])
    assert sums["spent"] == sums["committed"] == sums["total"] == sum(costs) <= cap
    assert sums["requests"] == len(ok) == calls
