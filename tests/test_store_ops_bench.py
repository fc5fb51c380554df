"""bench/store_ops.py counts what it claims: a known sequence of store calls comes out as exactly
those primitives and key families, and a real request through the app is counted (so the bench
cannot silently report zero)."""

from __future__ import annotations

import httpx
import pytest
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.store.memory import MemoryStore

from bench import store_ops
from tests.support.router_app import app_settings

pytestmark = pytest.mark.anyio


async def test_counts_a_known_sequence_by_primitive_and_key() -> None:
    store = store_ops.CountingStore(MemoryStore())
    await store.put("fact:req_0b41d724da5fc4aa", {"a": 1})
    await store.add("spend:2026-12-07", {"micro": 5})
    await store.add("budget:2026-12-07", {"micro": 5}, limits={"micro": 10})
    await store.add("budget:2026-12-07", {"micro": 1}, claim=("hold", "r1"))
    assert await store.put_if("lease:x", {"owner": "a"}, expected={"owner": None})
    assert await store.get("spend:2026-12-07") == {"micro": 5}
    got = await store.get_many(["spend:2026-12-07", "budget:2026-12-07", "spend:2026-12-07"])
    await store.delete("lease:x")
    mark = len(store.calls)
    await store.get("absent")

    assert got["spend:2026-12-07"] == {"micro": 5}  # calls pass through to the real store
    assert store_ops.summarize(store.counts()) == {
        "get": 2, "get_many": 1, "put": 1, "add": 1, "add_if": 2, "put_if": 1, "delete": 1,
        "reads": 3, "writes": 6,
    }  # fmt: skip
    assert store.families() == {
        "put fact:<id>": 1,
        "add spend:<day>": 1,
        "add_if budget:<day>": 2,
        "put_if lease:x": 1,
        "get spend:<day>": 1,
        "get_many spend:<day>": 1,  # a duplicate key in one batch is read once
        "get_many budget:<day>": 1,
        "delete lease:x": 1,
        "get absent": 1,
    }
    assert store.counts(since=mark) == {"get": 1}


def test_key_families_hide_the_variable_parts() -> None:
    assert store_ops.key_family("budget:2026-12-07:key:team") == "budget:<day>:key:team"
    assert store_ops.key_family("rl:team:29410333") == "rl:team:<n>"
    assert store_ops.key_family("cache:9f86d081884c7d659a2feaa0c55ad015") == "cache:<id>"


async def test_a_request_through_the_app_is_counted() -> None:
    """A budgeted chat request against a mock provider: its reservation and its settle (which
    counts the ledger too) are two writes on the day item (three before issue 18)."""
    rules = store_ops.rules_doc("http://unused", {"budgets": store_ops.BUDGETS})
    rules["providers"]["fake"] = {"kind": "mock", "base_url": "mock://m"}
    store = store_ops.CountingStore(MemoryStore())
    app = create_app(app_settings(), rules=parse_rules(rules, "t.yaml"), store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        body = store_ops.request_body(store_ops.FEATURES[1], 0, stream=False)
        response = await http.post("/v1/chat/completions", json=body)
    await store_ops.settle(app)
    assert response.status_code == 200, response.text
    row = store_ops.summarize(store.counts())
    assert row["writes"] == 2 + 1  # and the day's layout, pinned by its first request (spend.layout)
    writes = {k: v for k, v in store.families().items() if not k.startswith("get")}
    assert writes == {"add_if spend:<day>": 2, "put_if spend:<day>#layout": 1}


@pytest.mark.parametrize("shards", [1, 4])
async def test_budgets_and_key_limits_take_three_writes(shards: int) -> None:
    """The issue-18 target, through the app: a router key with rpm/tpm limits and a daily cap,
    under a global cap with pacing — the rate-limit write, the reservation and the settle (which
    counts the request too) are the request's only writes (6 before issue 18)."""
    budgets = {**store_ops.KEY_BUDGETS, "shards": shards}
    rules = store_ops.rules_doc("http://unused", {"budgets": budgets, "limits": store_ops.LIMITS})
    rules["providers"]["fake"] = {"kind": "mock", "base_url": "mock://m"}
    store = store_ops.CountingStore(MemoryStore())
    settings = app_settings(api_keys=(f"team={store_ops.ROUTER_KEY}",), api_keys_set=True)
    app = create_app(settings, rules=parse_rules(rules, "t.yaml"), store=store)
    headers = {"authorization": f"Bearer {store_ops.ROUTER_KEY}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as http:
        for n in range(3):
            mark = len(store.calls)
            body = store_ops.request_body(store_ops.FEATURES[2], n, stream=bool(n % 2))
            response = await http.post("/v1/chat/completions", json=body, headers=headers)
            await response.aread()
            await store_ops.settle(app)
            assert response.status_code == 200, response.text
            row = store_ops.summarize(store.counts(mark))
            families = store.families(mark)
            assert row["writes"] == 3 + families["put_if spend:<day>#layout"]
            assert families["put_if spend:<day>#layout"] == (1 if n == 0 else 0)  # the day's first request
            assert families["add_if rl:team:<n>"] == 1
            day_items = {k: v for k, v in families.items() if k.startswith("add_if spend:<day>")}
            assert sum(day_items.values()) == 2
            assert len(day_items) == 1  # reservation and settle on the same shard
    spend = app.gateway.spend
    report = await spend.ledger.today()
    assert (report.requests, report.by_key) == (3, {"team": report.total})
    budgets = await spend.guard.status(["team"])  # every shard read and summed
    for scope in (budgets["global"], budgets["keys"]["team"]):
        assert scope["in_flight"] == 0
        assert scope["spent_usd"] == scope["committed_usd"] == report.as_dict()["total_usd"]
