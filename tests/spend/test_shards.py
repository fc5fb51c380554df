"""Sharded day items: each shard enforces its share of a cap, the shares sum to the cap, a
reservation is one write (both caps) and its settle one more (budget and ledger counters). Runs
on memory, SQLite and DynamoDB (moto) where it matters; time moved by the fake clock."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.counters import SpendLedger
from tier_router.spend.pricing import usd
from tier_router.spend.shards import no_room, share, visiting_order
from tier_router.store.base import Store, StoreError, StoreUnavailable
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Observing, Slow, Watched, Wrapped

pytestmark = pytest.mark.anyio

DAY = "2026-11-23"
NOON = at(2026, 11, 23, 12)
USD = 1_000_000
W = 100_000  # every request here reserves $0.10


def items(shards: int) -> list[str]:
    return [f"spend:{DAY}"] if shards == 1 else [f"spend:{DAY}#{i}" for i in range(shards)]


async def summed(store: Store, shards: int, *fields: str) -> dict[str, int]:
    values = await store.get_many(items(shards))
    return {f: sum(int(v.get(f, 0)) for v in values.values()) for f in fields}


@pytest.fixture
async def patient(store: Store, clock: FakeClock) -> AsyncIterator[Store]:
    """`store`, with a 30 s HTTP timeout on DynamoDB: moto serves one request at a time in this
    process, and 32 at once on a loaded machine outlast the default 2 s (a timeout fails the
    reservation open: right for the router, not what these tests are about)."""
    if not isinstance(store, DynamoDBStore):
        yield store
        return
    slow = DynamoDBStore(store.table, endpoint=store.url, region=store.region, clock=clock, timeout_s=30)
    yield slow
    await slow.aclose()


def guard_on(store: Any, clock: FakeClock, shards: int, **config: Any) -> BudgetGuard:
    return BudgetGuard(store, BudgetConfig(shards=shards, reservation_ttl_s=60, **config), clock=clock)


# --- the arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7, 16, 100])
def test_the_shares_sum_to_the_cap_exactly(shards: int) -> None:
    rng = random.Random(shards)
    for cap in [0, 1, shards - 1, shards, shards + 1, 10**6 + 3, *(rng.randrange(10**12) for _ in range(50))]:
        parts = [share(cap, shards, i) for i in range(shards)]
        assert sum(parts) == cap
        assert max(parts) - min(parts) <= 1


def test_a_reservation_visits_every_shard_once() -> None:
    rng = random.Random(7)
    starts = set()
    for _ in range(200):
        order = visiting_order(5, rng)
        assert sorted(order) == [0, 1, 2, 3, 4]
        starts.add(order[0])
    assert starts == {0, 1, 2, 3, 4}  # spread: every shard is somebody's first choice
    assert visiting_order(1) == [0]


def test_no_room_means_every_shard_lacks_room() -> None:
    keys = ["a", "b", "c"]
    cap = 30  # shares 10, 10, 10
    assert no_room({"a": {"x": 6}, "b": {"x": 6}, "c": {"x": 6}}, keys, "x", cap, 5)
    assert not no_room({"a": {"x": 6}, "b": {"x": 5}, "c": {"x": 6}}, keys, "x", cap, 5)
    assert not no_room({"a": {"x": 6}, "b": {"x": 6}}, keys, "x", cap, 5)  # c is empty


@pytest.mark.parametrize("shards", [1, 2, 4, 8])
async def test_under_use_is_less_than_shards_times_the_request(clock: FakeClock, shards: int) -> None:
    """Fill the cap with requests of random sizes until one is refused: every admitted one
    fits under the cap, and the refused one leaves less than N × its size unused."""
    clock.now = NOON
    store = MemoryStore(clock=clock)
    rng = random.Random(shards)
    guard = guard_on(store, clock, shards, daily_usd=3.0)
    cap = 3 * USD
    for _ in range(20):  # twenty days' worth of fills, each from empty
        for item in items(shards):
            await store.delete(item)
        committed = 0
        while True:
            w = rng.randrange(1, 2 * W)
            held = await guard.reserve(None, w, holder="r")
            if isinstance(held, CapReached):
                assert held.scope == "global"
                assert cap - committed < shards * w  # the documented under-use bound
                break
            committed += w
            assert committed <= cap
        assert (await summed(store, shards, "committed"))["committed"] == committed


# --- one write to reserve, one to settle --------------------------------------------------


@pytest.mark.parametrize("shards", [1, 4])
async def test_reserve_and_settle_are_two_writes_with_both_caps(clock: FakeClock, shards: int) -> None:
    clock.now = NOON
    observed = Observing(MemoryStore(clock=clock))
    guard = guard_on(observed, clock, shards, daily_usd=10.0, per_key_daily_usd=5.0)
    ledger = SpendLedger(observed, shards=shards, clock=clock)
    await guard.layouts.pinned(DAY)  # once per day and process (spend.layout); not per request
    observed.calls.clear()
    held = await guard.reserve("team", W, holder="req-1")
    assert isinstance(held, Reservation)
    counts = ledger.deltas(cost=W // 2, tier="t", model="m", rule="r", router_key="team")
    assert await guard.settle(held, W // 2, counts=counts)
    assert observed.calls == {"add": 2}
    report = await ledger.report(DAY)
    assert (report.total, report.requests, report.by_key) == (W // 2, 1, {"team": W // 2})
    assert await summed(observed, shards, "committed", "spent", "kc.team", "ks.team") == {
        "committed": W // 2,
        "spent": W // 2,
        "kc.team": W // 2,
        "ks.team": W // 2,
    }


# --- adversarial: many requests, room for one -------------------------------------------


def room_for_one(shards: int) -> int:
    """A cap whose shares have room for exactly one request of W on one shard: W, W-1, ..."""
    return W + (shards - 1) * (W - 1)


@pytest.mark.parametrize("shards", [1, 4])
@pytest.mark.parametrize("requests", [8, 32])
async def test_many_requests_against_room_for_one(
    patient: Store, clock: FakeClock, shards: int, requests: int
) -> None:
    store = patient
    clock.now = NOON
    cap = room_for_one(shards)
    observed = Observing(store)
    guard = guard_on(observed, clock, shards, daily_usd=cap / USD)
    outcomes = await asyncio.gather(*(guard.reserve(None, W, holder=f"r{i}") for i in range(requests)))
    admitted = [o for o in outcomes if isinstance(o, Reservation)]
    assert len(admitted) == 1
    assert all(o.scope == "global" for o in outcomes if isinstance(o, CapReached))
    assert max(v for (_, f), v in observed.peak.items() if f == "committed") <= W
    await guard.settle(admitted[0], W // 3)
    assert await summed(store, shards, "committed", "spent") == {"committed": W // 3, "spent": W // 3}


def room_for_two(shards: int) -> int:
    """A cap whose shares have room for exactly two requests of W (on two shards when sharded)."""
    return 2 * W if shards == 1 else 2 * W + (shards - 2) * (W - 1)


@pytest.mark.parametrize("shards", [1, 4])
async def test_a_key_cap_and_the_global_cap_both_near_full(
    patient: Store, clock: FakeClock, shards: int
) -> None:
    """Room for one request under each key's cap, for two under the global cap; 16 concurrent
    requests of key a, then 16 of key b, then 8 more of each: no cap is ever passed."""
    store = patient
    clock.now = NOON
    key_cap, cap = room_for_one(shards), room_for_two(shards)
    guard = guard_on(store, clock, shards, daily_usd=cap / USD, per_key_daily_usd=key_cap / USD)
    first = await asyncio.gather(*(guard.reserve("a", W, holder=f"a{i}") for i in range(16)))
    assert sum(isinstance(o, Reservation) for o in first) == 1
    assert {o.scope for o in first if isinstance(o, CapReached)} == {"key"}  # the global had room
    second = await asyncio.gather(*(guard.reserve("b", W, holder=f"b{i}") for i in range(16)))
    admitted_b = sum(isinstance(o, Reservation) for o in second)
    if shards == 1:
        assert admitted_b == 1  # sharded, b may be refused by shard 0's global share (under-use)
    both = [guard.reserve(key, W, holder=f"{key}-again{i}") for key in ("a", "b") for i in range(8)]
    assert not any(isinstance(o, Reservation) for o in await asyncio.gather(*both))
    totals = await summed(store, shards, "committed", "kc.a", "kc.b")
    assert totals["kc.a"] == W
    assert totals["kc.b"] == admitted_b * W
    assert totals["committed"] == totals["kc.a"] + totals["kc.b"] <= cap


# --- sums across shards ---------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 4])
async def test_sums_across_shards_are_exact(patient: Store, clock: FakeClock, shards: int) -> None:
    store = patient
    clock.now = NOON
    guard = guard_on(store, clock, shards, daily_usd=100.0, per_key_daily_usd=50.0)
    ledger = SpendLedger(store, shards=shards, clock=clock)
    rng = random.Random(3)
    plans = [(f"k{i % 3}", rng.randrange(0, W)) for i in range(48)]

    limit = anyio.CapacityLimiter(8)  # 8 requests in flight (moto answers slowly under more)

    async def one(i: int, key: str, actual: int) -> None:
        async with limit:
            held = await guard.reserve(key, W, holder=f"r{i}")
            assert isinstance(held, Reservation)
            counts = ledger.deltas(cost=actual, tier="t", model="m", rule="r", router_key=key)
            assert await guard.settle(held, actual, counts=counts)

    async with anyio.create_task_group() as tg:
        for i, (key, actual) in enumerate(plans):
            tg.start_soon(one, i, key, actual)
    total = sum(a for _, a in plans)
    report = await ledger.report(DAY)
    assert (report.total, report.requests) == (total, len(plans))
    by_key = {k: sum(a for kk, a in plans if kk == k) for k in ("k0", "k1", "k2")}
    assert {k: v for k, v in report.by_key.items()} == {k: v for k, v in by_key.items() if v}
    fields = ["committed", "spent", *(f"k{s}.k{i}" for s in "cs" for i in range(3))]
    sums = await summed(store, shards, *fields)
    assert sums["committed"] == sums["spent"] == total
    for i in range(3):
        assert sums[f"kc.k{i}"] == sums[f"ks.k{i}"] == by_key[f"k{i}"]
    status = await guard.status(["k0"])
    assert (status["global"]["in_flight"], status["keys"]["k0"]["in_flight"]) == (0, 0)
    assert status["global"]["spent_usd"] == usd(total)  # what `tier-router status` shows: summed
    assert status["keys"]["k0"]["spent_usd"] == status["keys"]["k0"]["committed_usd"] == usd(by_key["k0"])
    if shards > 1:  # the writes spread: every shard took some
        values = await store.get_many(items(shards))
        assert len(values) == shards


# --- settle: cancellation, timeouts, lost holds ----------------------------------------------


class SettleTimesOut(Wrapped):
    """The next settle write (an add with `release`) is applied, then times out at the caller:
    DynamoDB applied it and the answer was lost."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.armed = 1

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        new = await super().add(key, deltas, **options)
        if self.armed and options.get("release") is not None:
            self.armed -= 1
            raise StoreUnavailable("outcome unknown (test)")
        return new


@pytest.mark.parametrize("shards", [1, 4])
async def test_a_settle_whose_answer_is_lost_counts_once(store: Store, clock: FakeClock, shards: int) -> None:
    clock.now = NOON
    flaky = SettleTimesOut(store)
    guard = guard_on(flaky, clock, shards, daily_usd=1.0, per_key_daily_usd=1.0)
    ledger = SpendLedger(store, shards=shards, clock=clock)
    held = await guard.reserve("k", W, holder="r1")
    assert isinstance(held, Reservation)
    counts = ledger.deltas(cost=W // 4, tier="t", model="m", rule="r", router_key="k")
    assert await guard.settle(held, W // 4, counts=counts)  # retried after the lost answer
    assert flaky.armed == 0
    report = await ledger.report(DAY)
    assert (report.total, report.requests) == (W // 4, 1)
    assert await summed(store, shards, "committed", "spent", "kc.k") == {
        "committed": W // 4,
        "spent": W // 4,
        "kc.k": W // 4,
    }


@pytest.mark.parametrize("shards", [1, 4])
async def test_a_settle_after_its_hold_expired_counts_the_request_once(
    store: Store, clock: FakeClock, shards: int
) -> None:
    """The request outlived reservation_ttl_s: its hold was charged in full; its settle charges
    nothing more but still counts the request in the ledger — once, even when retried."""
    clock.now = NOON
    flaky = SettleTimesOut(store)
    flaky.armed = 0
    guard = guard_on(flaky, clock, shards, daily_usd=1.0)
    ledger = SpendLedger(store, shards=shards, clock=clock)
    held = await guard.reserve(None, W, holder="r1")
    assert isinstance(held, Reservation)
    clock.advance(61)
    assert await guard.holds.reclaim(held.items[0], clock(), force=True) == W
    flaky.armed = 1  # the tombstone's release lands and its answer is lost: retried, found gone
    counts = ledger.deltas(cost=W // 4, tier="t", model="m", rule="r", router_key=None)
    await guard.settle(held, W // 4, counts=counts)
    report = await ledger.report(DAY)
    assert (report.total, report.requests) == (W // 4, 1)
    assert await summed(store, shards, "committed", "spent", "unsettled") == {
        "committed": W,
        "spent": W,
        "unsettled": W,
    }


async def test_a_cancelled_settle_still_counts_the_request(clock: FakeClock) -> None:
    clock.now = NOON
    inner = Watched(MemoryStore(clock=clock))
    guard = guard_on(Slow(inner, 0.05), clock, 1, daily_usd=1.0, per_key_daily_usd=1.0)
    ledger = SpendLedger(inner, clock=clock)
    held = await guard.reserve("k", W, holder="r1")
    assert isinstance(held, Reservation)
    counts = ledger.deltas(cost=W // 2, tier="t", model="m", rule="r", router_key="k")
    with anyio.move_on_after(0.01):
        await guard.settle(held, W // 2, counts=counts)
        pytest.fail("the settle should have been cancelled")
    await inner.until(f"spend:{DAY}", {"committed": W // 2, "spent": W // 2})
    report = await ledger.report(DAY)
    assert (report.total, report.requests, report.by_key) == (W // 2, 1, {"k": W // 2})
    assert await guard.settle(held, W // 2, counts=counts)  # a second settle does nothing
    assert (await ledger.report(DAY)).requests == 1


class Full(Wrapped):
    """Writes to `item` are refused by the store as DynamoDB refuses an update past 400 KB
    (a ValidationException: not applied)."""

    def __init__(self, inner: Store, item: str) -> None:
        super().__init__(inner)
        self.item = item
        self.refused = 0

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        if key == self.item:
            self.refused += 1
            raise StoreError("DynamoDB rejected UpdateItem: Item size has exceeded the maximum allowed size")
        return await super().add(key, deltas, **options)


@pytest.mark.parametrize("mode", ["allow", "reject"])
async def test_a_full_shard_passes_the_reservation_on(
    clock: FakeClock, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard the store refuses to write (not applied) is skipped: the reservation lands on
    another, counted. With one shard there is no other: the store-error policy applies."""
    starts = itertools.cycle(range(4))  # every start shard in turn (at random, shard 0 was
    monkeypatch.setattr(random, "randrange", lambda n: next(starts) % n)  # missed 3% of runs)
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    full = Full(inner, items(4)[0])
    guard = guard_on(full, clock, 4, daily_usd=1.0, on_store_error=mode)
    for i in range(12):  # every start shard, shard 0 among them
        held = await guard.reserve(None, W // 10, holder=f"r{i}")
        assert isinstance(held, Reservation)
        assert not held.uncounted
        assert held.items != (items(4)[0],)
    assert full.refused > 0
    fresh = MemoryStore(clock=clock)  # `inner`'s day is pinned to 4 shards (spend.layout)
    one = guard_on(Full(fresh, items(1)[0]), clock, 1, daily_usd=1.0, on_store_error=mode)
    if mode == "reject":
        with pytest.raises(StoreError):
            await one.reserve(None, W, holder="x")
    else:
        held = await one.reserve(None, W, holder="x")
        assert isinstance(held, Reservation)
        assert held.uncounted
