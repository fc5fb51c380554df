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
from tier_router.quality import report as quality_report
from tier_router.router_keys import KeyRecord
from tier_router.routing.loader import parse_rules
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, Reservation
from tier_router.spend.counters import SpendLedger, day_key
from tier_router.spend.results import RequestResult
from tier_router.store.memory import MemoryStore
from tier_router.store.regional import RegionalStore
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


# --- region shares on one shared table, each region with two shard counts -----------------

NOON = at(2026, 11, 23, 12)


async def test_region_shares_with_two_shard_counts_per_region_hold_the_cap() -> None:
    """Two regions write one table (`store.regional` namespaces), each with a share of $2.40,
    and in each region two processes with 1 and 4 shards start the day together: each region
    pins its own layout, and the regions' committed together never pass the cap."""
    table, clock = MemoryStore(), FakeClock(NOON)
    shares = {"us-east-1": 0.5, "eu-west-1": 0.5}
    budgets = BudgetConfig(daily_usd=2.4, shards=1, reservation_ttl_s=600, region_shares=shares)
    guards = [
        BudgetGuard(
            RegionalStore(table, region),
            budgets.for_region(region).model_copy(update={"shards": shards}),
            clock=clock,
        )
        for region in shares
        for shards in (1, 4)
    ]
    held = await asyncio.gather(
        *(g.reserve(None, W, holder=f"g{i}-{j}") for i, g in enumerate(guards) for j in range(10))
    )
    admitted = [r for r in held if isinstance(r, Reservation)]
    assert len(admitted) == 24  # $1.20 a region: 12 of $0.10 (1 shard, or $0.30 on each of 4)
    pins = {region: (await table.get(f"{region}:spend:{DAY}#layout")) for region in shares}
    assert all(pin is not None for pin in pins.values())
    everything = await table.get_many([f"{region}:{item}" for region in shares for item in all_items(DAY)])
    assert sum(int(v.get("committed", 0)) for v in everything.values()) == 24 * W <= 24 * W


# --- the upgrade day raced by six processes on one SQLite file ---------------------------


async def test_upgrade_day_raced_by_six_sqlite_processes_carries_once(tmp_path: Path) -> None:
    """A router before issue 18 left $0.50 committed (two requests still in flight) in
    `budget:<day>`; six new processes (1, 2 and 4 shards, each its own connection) take their
    first requests of the day at the same moment. One pin carries the $0.50 once; the day
    admits exactly the $0.70 left of $1.20, and the ledger counts each admitted request once."""
    path = str(tmp_path / "state.sqlite3")
    clock = FakeClock(NOON)
    seed = SQLiteStore(path)
    await seed.put(
        f"budget:{DAY}", {"committed": 5 * W, "spent": 3 * W, "h.9999999999.x.1": W, "h.9999999999.x.2": W}
    )
    await seed.add(f"spend:{DAY}", {"total": 3 * W, "requests": 3})
    procs = []
    for i in range(6):
        store = SQLiteStore(path)
        ledger = SpendLedger(store, shards=(1, 2, 4)[i % 3], clock=clock)
        guard = BudgetGuard(
            store,
            BudgetConfig(daily_usd=1.2, shards=(1, 2, 4)[i % 3], reservation_ttl_s=600),
            clock=clock,
            layouts=ledger.layouts,
        )
        procs.append((guard, ledger))

    async def one(guard: BudgetGuard, ledger: SpendLedger, holder: str) -> int:
        r = await guard.reserve(None, W // 2, holder=holder)
        if not isinstance(r, Reservation):
            return 0
        counts = ledger.deltas(cost=W // 2, tier="main", model="a", rule="r", router_key=None)
        if not await guard.settle(r, W // 2, counts=counts):
            await ledger.record_deltas(r.day, counts)
        return 1

    results = await asyncio.gather(
        *(one(g, led, f"p{i}-{j}") for i, (g, led) in enumerate(procs) for j in range(8))
    )
    layouts = {
        (lay.shards, tuple(sorted(lay.carried.items()))) for lay in [g.layouts.cached(DAY) for g, _ in procs]
    }
    assert len(layouts) == 1  # one layout, one carry, in every process
    ((shards, carried),) = layouts
    assert dict(carried)["committed"] == 5 * W
    admitted = sum(results)
    room = {1: 14, 2: 14, 4: 12}[shards]  # $0.70 left in $0.05 requests; 4 shards: $0.175 each -> 3
    assert admitted == room
    report = await procs[0][1].report(DAY)
    assert report.requests == 3 + admitted  # the legacy ledger's 3, then each admitted request once
    assert report.total == 3 * W + admitted * (W // 2)
    values = await seed.get_many(all_items(DAY))
    assert sum(int(v.get("committed", 0)) for v in values.values()) <= 12 * W


# --- readers in a fresh process after a mid-day shards change -----------------------------


@pytest.mark.parametrize(("pinned", "configured"), [(1, 3), (3, 1)])
async def test_the_quality_report_of_a_fresh_process_reads_the_pinned_layout(
    pinned: int, configured: int
) -> None:
    """`tier-router quality report` and `tier-router status` (its quality section) run in a new
    process, after the rules file's `shards` changed mid-day: the day's requests are on the
    pinned items. Before the fix the report read the configured count's items (the layout
    this process had not cached): the day's 12 requests showed as 0."""
    store, clock = MemoryStore(), FakeClock(NOON)
    server = SpendLedger(store, shards=pinned, clock=clock)
    for _ in range(12):
        result = RequestResult(cost=10, tier="budget", rule="short", key=None, arm=None, model="small")
        await server.record(
            DAY, cost=10, tier="budget", model="small", rule="short", router_key=None, result=result
        )
    cli = SpendLedger(store, shards=configured, clock=clock)
    report = await quality_report.read(cli, today=DAY)
    assert report.requests["tier"]["budget"] == 12
