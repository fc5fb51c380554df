"""Adversary of the day's layout, second round (issue 18, helper adv19): what test_layout.py and
test_adversary18_layout.py do not try.

- The upgrade day with `per_key_daily_usd` (every key capped) and keys from a keys file: a key
  whose legacy `budget:<day>:key:<key>` item holds only reservations still in flight has no
  ledger count yet, so the pin did not know to read it — its key cap was overrun by what was
  in flight (found here; fixed: every key of the keys file is a capped key for the pin).
- Two router processes with different shard counts on one SQLite file across a UTC midnight:
  requests reserved before midnight settle after it, on the day they were reserved; the new
  day is pinned afresh (by whichever process writes first), and both days hold their cap, with
  each admitted request counted once in its day's ledger.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from tier_router.admission import SpendControls
from tier_router.router_keys import KeyRecord
from tier_router.routing.loader import parse_rules
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, Reservation
from tier_router.spend.counters import SpendLedger, day_key
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at

pytestmark = pytest.mark.anyio

W = 100_000  # $0.10 per request


def rules(budgets: dict[str, Any]) -> Any:
    return parse_rules(
        {
            "providers": {"p": {"kind": "openai", "base_url": "https://p.test/v1", "api_key_env": "K"}},
            "models": {"a": {"provider": "p", "id": "a", "price": {"input": 1, "output": 4}}},
            "tiers": {"main": ["a"]},
            "default_tier": "main",
            "budgets": budgets,
        }
    )


def all_items(day: str) -> list[str]:
    return [f"spend:{day}", *(f"spend:{day}#{i}" for i in range(100)), f"spend:{day}#layout"]


@pytest.mark.parametrize("shards", [1, 4])
async def test_upgrade_day_per_key_cap_counts_a_keys_legacy_reservations_in_flight(shards: int) -> None:
    """Before issue 18 a router held key `team-b`'s requests in `budget:<day>:key:team-b`; at the
    deploy five of them ($0.50 of the key's $0.60) are still in flight: not settled, so not in
    the legacy ledger. The new version's first request pins the day. Before the fix the pin
    carried the key's item only for keys named in `key_daily_usd` or counted by the ledger: the
    key got a full $0.60 more ($1.10 against $0.60)."""
    store = MemoryStore()
    day = day_key(time.time())
    holds = {f"h.9999999999.old-{i}.team-b": W for i in range(5)}
    await store.put(f"budget:{day}", {"committed": 5 * W, "spent": 0, **holds})
    await store.put(f"budget:{day}:key:team-b", {"committed": 5 * W, "spent": 0, **holds})
    controls = SpendControls(store, rules({"per_key_daily_usd": 0.6, "shards": shards}))
    controls.apply_keys(
        [KeyRecord(name="team-a", sha256="a" * 64), KeyRecord(name="team-b", sha256="b" * 64)]
    )
    guard = controls.guard
    assert guard is not None
    admitted = 0
    for i in range(40):  # $0.02 each
        held = await guard.reserve("team-b", W // 5, holder=f"new-{i}")
        if isinstance(held, Reservation):
            await guard.settle(held, W // 5)
            admitted += 1
    assert admitted == {1: 5, 4: 4}[shards]  # $0.10 left ($0.025 a shard of 4); before: 30 / 28
    legacy = 5 * W
    layout = await guard.layouts.pinned(day)
    assert layout.carried.get("kc.team-b") == legacy
    # the key's total, legacy in flight + the new version's, never passes its cap
    values = await store.get_many(list(layout.items))
    new = sum(int(v.get("kc.team-b", 0)) for v in values.values())
    assert legacy + new <= 6 * W


# --- two processes, two shard counts, across midnight -------------------------------------

BEFORE = at(2026, 11, 23, 23, 59, 30)
DAY, NEXT = "2026-11-23", "2026-11-24"


def process(path: Path, clock: FakeClock, shards: int) -> tuple[BudgetGuard, SpendLedger]:
    store = SQLiteStore(str(path))
    ledger = SpendLedger(store, shards=shards, clock=clock)
    guard = BudgetGuard(
        store,
        BudgetConfig(daily_usd=1.2, shards=shards, reservation_ttl_s=600),
        clock=clock,
        layouts=ledger.layouts,
    )
    return guard, ledger


async def serve(guard: BudgetGuard, tag: str, n: int) -> list[Reservation]:
    """`n` requests reserved at once; the admitted ones."""
    held = await asyncio.gather(*(guard.reserve(None, W, holder=f"{tag}{i}") for i in range(n)))
    return [r for r in held if isinstance(r, Reservation)]


@pytest.mark.parametrize("order", [(1, 4), (4, 1)])
async def test_two_shard_counts_across_midnight_hold_each_days_cap(
    tmp_path: Path, order: tuple[int, int]
) -> None:
    path = tmp_path / "state.sqlite3"
    clock = FakeClock(BEFORE)
    (ga, la), (gb, lb) = process(path, clock, order[0]), process(path, clock, order[1])
    admitted: dict[str, int] = {DAY: 0, NEXT: 0}
    pending: list[tuple[BudgetGuard, SpendLedger, Reservation]] = []
    for guard, ledger, tag in ((ga, la, "a"), (gb, lb, "b")):  # 2 x 8 at 23:59:30: room for 12
        held = await serve(guard, tag, 8)
        pending += [(guard, ledger, r) for r in held]
    clock.advance(60)  # 00:00:30: settle yesterday's in flight, then the new day's traffic
    for guard, ledger, r in pending:
        counts = ledger.deltas(cost=W, tier="main", model="a", rule="r", router_key=None)
        if not await guard.settle(r, W, counts=counts):
            await ledger.record_deltas(r.day, counts)
        admitted[r.day] += 1
    for guard, ledger, tag in ((gb, lb, "b2-"), (ga, la, "a2-")):
        held = await serve(guard, tag, 8)
        for r in held:
            counts = ledger.deltas(cost=W, tier="main", model="a", rule="r", router_key=None)
            if not await guard.settle(r, W, counts=counts):
                await ledger.record_deltas(r.day, counts)
            admitted[r.day] += 1
    assert admitted[DAY] == 12  # the cap ($0.30 a shard of 4), not 8 + 8 (each process's own items)
    assert admitted[NEXT] == 12
    for day, layout_shards in ((DAY, order[0]), (NEXT, order[1])):
        layout = await ga.layouts.view(day)
        assert layout.shards == layout_shards  # each day pinned by its first writer
        assert (await gb.layouts.view(day)).shards == layout_shards
        values = await ga.store.get_many(all_items(day))
        assert sum(int(v.get("committed", 0)) for v in values.values()) <= 12 * W
        report = await la.report(day)
        assert report.requests == admitted[day]  # each admitted request counted once
        assert report.total == admitted[day] * W
