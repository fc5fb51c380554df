"""Adversary of the day's layout through the app (issue 18, helper adv19): two routers whose
rules give different `budgets.shards` (a mid-day change, or two versions during a deploy) share
one SQLite state file (each its own connection, as two processes), either one taking the day's
first request; then 64 `n: 8` requests at the reservation bound (billed honestly and slowly, so
reservations overlap) go to both at once. The promise: the day has one layout (the first
writer's), the served costs never pass the cap, and the pinned items sum exactly to what was
served — the ledger's `total` and `requests`, the budget's `spent` — with nothing written on
the other count's items. Before the pin each router capped its own items: up to two caps."""

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

from tests.resilience.test_cap_bound import CONCURRENCY, honest_usage, n8
from tests.support import openai_bodies

pytestmark = pytest.mark.anyio

CAP_USD = 0.25  # test_cap_bound's $0.05 for each of 5 shards


@pytest.mark.parametrize("counts", [(1, 5), (5, 1)], ids=["first-1-shard", "first-5-shards"])
async def test_two_shard_counts_through_the_app_hold_one_cap(
    make_router: Any,
    rules_dict: Any,
    upstream: respx.MockRouter,
    urls: dict[str, str],
    tmp_path: Path,
    counts: tuple[int, int],
) -> None:
    path = tmp_path / "state.db"
    calls = 0

    async def bill(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        body = json.loads(request.content)
        return httpx.Response(200, json=openai_bodies.completion(usage=honest_usage(body)))

    upstream.post(urls["primary"]).mock(side_effect=bill)
    routers = []
    for shards in counts:
        rules = rules_dict(budgets={"daily_usd": CAP_USD, "pacing": {"enabled": False}, "shards": shards})
        rules["tiers"]["fast"] = ["primary"]
        routers.append(make_router(rules=rules, store=SQLiteStore(path)))
    first = await routers[0].post("/v1/chat/completions", json=n8())  # pins the day
    assert first.status_code == 200, first.text
    rest = await asyncio.gather(
        *(routers[i % 2].post("/v1/chat/completions", json=n8()) for i in range(CONCURRENCY))
    )
    responses = [first, *rest]
    for r in responses:
        assert r.status_code in (200, 429), r.text
    ok = [r for r in responses if r.status_code == 200]
    assert len(ok) < len(responses), "the cap never refused: the test does not exercise it"
    await asyncio.sleep(0.3)  # settles run in tasks the client cannot cancel
    costs = [int(Decimal(r.headers["x-router-cost-usd"]) * 1_000_000) for r in ok]
    cap = round(CAP_USD * 1_000_000)
    assert sum(costs) <= cap
    day = day_key(time.time())
    store = SQLiteStore(path)
    assert await store.get(f"spend:{day}#layout") == {"shards": counts[0]}
    pinned = await store.get_many(day_items("spend:", day, counts[0]))
    other = await store.get_many(day_items("spend:", day, counts[1]))
    assert not set(other) - set(pinned)  # the second count's items were never written
    sums = summed(pinned.values(), ["spent", "committed", "total", "requests"])
    assert sums["spent"] == sums["committed"] == sums["total"] == sum(costs) <= cap
    assert sums["requests"] == len(ok) == calls  # each served request counted once
