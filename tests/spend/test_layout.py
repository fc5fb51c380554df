"""A budget day's layout is pinned by its first writer (`spend.layout`): a mid-day `shards`
change takes effect the next day, and the day's spend from before the pin — legacy
`budget:<day>` items of routers before issue 18, or items of another shard count — is carried
into the day's accounting exactly once. Runs on memory, SQLite, a region's view and DynamoDB
(moto) where the store matters; time moved by the fake clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.counters import SpendLedger
from tier_router.spend.layout import DayLayouts, Layout
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Failing, Observing

pytestmark = pytest.mark.anyio

DAY = "2026-11-23"
NEXT = "2026-11-24"
NOON = at(2026, 11, 23, 12)
USD = 1_000_000
W = 100_000  # $0.10 per request here
LAYOUT = f"spend:{DAY}#layout"


def items(shards: int, day: str = DAY) -> list[str]:
    return [f"spend:{day}"] if shards == 1 else [f"spend:{day}#{i}" for i in range(shards)]


def guard_on(store: Any, clock: FakeClock, shards: int, **config: Any) -> BudgetGuard:
    """A router process: its own guard, so its own in-process layout cache."""
    return BudgetGuard(store, BudgetConfig(shards=shards, reservation_ttl_s=60, **config), clock=clock)


async def spend(guard: BudgetGuard, n: int, key: str | None = None, tag: str = "r") -> int:
    """`n` requests of W, one after the other, settled at W; returns how many were admitted."""
    admitted = 0
    for i in range(n):
        held = await guard.reserve(key, W, holder=f"{tag}{i}")
        if isinstance(held, Reservation):
            await guard.settle(held, W)
            admitted += 1
    return admitted


async def committed(store: Store, day: str = DAY) -> int:
    """`committed` over every item of `day` any layout may write, plus the pin's carry."""
    keys = [*items(1, day), *items(100, day), f"spend:{day}#layout"]
    values = await store.get_many(keys)
    return sum(int(v.get("committed", 0)) for v in values.values())


@pytest.mark.parametrize(("first", "then"), [(1, 5), (5, 1), (2, 5)])
async def test_a_mid_day_shards_change_keeps_the_days_layout(
    store: Store, clock: FakeClock, first: int, then: int
) -> None:
    """The rules file moves `shards` mid-day (a deploy): the new process uses the day's pinned
    layout, so the cap still holds over the day; the next day takes the new count. On the code
    before the pin, the second process admitted up to one more cap ($1.80 against $1)."""
    clock.now = NOON
    old = guard_on(store, clock, first, daily_usd=1.0)
    assert await spend(old, 6) == 6
    new = guard_on(store, clock, then, daily_usd=1.0)
    assert await spend(new, 10) == 4  # room for $0.40 more, not for $1
    assert await committed(store) == USD
    assert (await new.layouts.pinned(DAY)).items == tuple(items(first))
    status = await new.status()
    assert status["global"]["committed_usd"] == "1.000000"  # readers use the pinned layout too
    clock.advance(86_400)
    assert await spend(new, 12) == 10
    assert (await new.layouts.pinned(NEXT)).items == tuple(items(then, NEXT))
    values = await store.get_many(items(then, NEXT))
    assert sum(int(v.get("committed", 0)) for v in values.values()) == USD


@pytest.mark.parametrize("counts", [(1, 4), (4, 1), (2, 4, 1, 4)])
async def test_routers_with_different_counts_racing_hold_one_cap(
    store: Store, clock: FakeClock, counts: tuple[int, ...]
) -> None:
    """Two (or four) routers with different `shards` share one store during a deploy and start
    the day at once, 24 requests against room for 4: one layout is pinned, 4 are admitted.
    Before the pin, each count enforced the cap on its own items (8 admitted for (1, 4))."""
    clock.now = NOON
    guards = [guard_on(store, clock, n, daily_usd=0.4) for n in counts]

    async def one(i: int) -> bool:
        guard = guards[i % len(guards)]
        held = await guard.reserve(None, W, holder=f"r{i}")
        if isinstance(held, CapReached):
            return False
        await guard.settle(held, W)
        return True

    admitted = sum(await asyncio.gather(*(one(i) for i in range(24))))
    pinned = {(await g.layouts.pinned(DAY)).shards for g in guards}
    assert len(pinned) == 1
    assert pinned <= set(counts)
    assert admitted == 4
    assert await committed(store) == 4 * W


async def test_the_layout_is_read_once_per_day_and_process(clock: FakeClock) -> None:
    """20 concurrent first requests of the day: one pin (a read and a conditional put, plus the
    carry's batch reads); after it, a reservation and its settle read nothing."""
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    pins: list[str] = []

    class Pinning(Observing):
        async def put_if(self, key: str, value: Any, **options: Any) -> bool:
            pins.append(key)
            return await super().put_if(key, value, **options)

    observed = Pinning(inner)
    guard = guard_on(observed, clock, 4, daily_usd=10.0)
    held = await asyncio.gather(*(guard.reserve(None, W, holder=f"r{i}") for i in range(20)))
    assert pins == [LAYOUT]
    first_reads = observed.calls["get_many"]
    assert first_reads == 1  # the carry: 101 candidate items + the legacy item, in one call
    await asyncio.gather(*(guard.settle(h, W) for h in held if isinstance(h, Reservation)))
    observed.calls.clear()
    for i in range(5):
        again = await guard.reserve(None, W, holder=f"s{i}")
        assert isinstance(again, Reservation)
        await guard.settle(again, W)
    assert observed.calls == {"add": 10}


async def test_a_pin_that_lands_then_times_out_is_read_back(clock: FakeClock) -> None:
    """The pin's write lands and its answer is lost: the next try reads the pin, so the process
    uses the layout the store holds (not a second one), and the carry is written once."""
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    await inner.add(f"budget:{DAY}", {"committed": 2 * W, "spent": 2 * W})

    class LostAnswer(Failing):
        lost = 0

        async def put_if(self, key: str, value: Any, **options: Any) -> bool:
            landed = await self.inner.put_if(key, value, **options)
            if landed and not self.lost:
                self.lost += 1
                raise StoreUnavailable("landed, then timed out (test)")
            return landed

    flaky = LostAnswer(inner, down=False)
    guard = guard_on(flaky, clock, 4, daily_usd=1.0)
    assert await spend(guard, 10) == 8
    assert flaky.lost == 1
    pin = await inner.get(LAYOUT)
    assert pin == {"shards": 4, "committed": 2 * W, "spent": 2 * W}
    assert await committed(inner) == USD


async def test_a_store_down_at_the_first_request_settles_once_it_is_back(clock: FakeClock) -> None:
    """`on_store_error: allow` serves a request whose day's layout cannot be read; its settle
    pins the layout when the store is back and charges there."""
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    failing = Failing(inner)
    guard = guard_on(failing, clock, 4, daily_usd=1.0)
    held = await guard.reserve(None, W, holder="r0")
    assert isinstance(held, Reservation)
    assert held.uncounted
    failing.down = False
    await guard.settle(held, W // 2)
    assert (await guard.status())["global"]["spent_usd"] == "0.050000"
    assert await committed(inner) == W // 2


# --- the upgrade day: legacy items ------------------------------------------------------


async def legacy_day(store: Store) -> None:
    """What a router before issue 18 left at noon: a global budget with one request in flight,
    a key's budget, and the ledger's item (which names the key)."""
    await store.put(f"budget:{DAY}", {"committed": 8 * W, "spent": 7 * W, "h.9999999999.req-9.ab1": W})
    await store.add(f"budget:{DAY}:key:team%2Fa", {"committed": 2 * W, "spent": 2 * W})
    await store.add(
        f"spend:{DAY}", {"total": 7 * W, "requests": 7, "key.team%2Fa": 2 * W, "key_n.team%2Fa": 2}
    )


@pytest.mark.parametrize("shards", [1, 4])
async def test_the_upgrade_day_counts_what_legacy_items_committed(
    store: Store, clock: FakeClock, shards: int
) -> None:
    """Money committed before the upgrade counts against the day's caps (global and key), in
    status and pacing too; the ledger's report keeps the legacy counters. Before: forgotten,
    one more cap admitted."""
    clock.now = NOON
    await legacy_day(store)
    guard = guard_on(store, clock, shards, daily_usd=1.6, per_key_daily_usd=0.6)
    assert await spend(guard, 10, key="team/a") == 4  # the key had $0.20 of its $0.60
    assert await spend(guard, 10, key="other") == 4  # the global cap: $0.80 + $0.40 before
    status = await guard.status(["team/a"])
    assert status["global"]["committed_usd"] == "1.600000"
    assert status["global"]["spent_usd"] == "1.500000"  # the legacy in-flight request: committed only
    assert status["keys"]["team/a"]["committed_usd"] == "0.600000"
    report = await SpendLedger(store, shards=shards, clock=clock).report(DAY)
    assert report.requests == 7  # the legacy ledger's (the guard's settles here carried no counts)
    assert report.by_key["team/a"] == 2 * W


async def test_legacy_spend_is_carried_once_however_many_pin(store: Store, clock: FakeClock) -> None:
    """16 processes start on the upgrade day at once: one pin lands with the carry, the others
    read it; the carry is counted once, and legacy writes after the pin are not counted again."""
    clock.now = NOON
    await legacy_day(store)
    guards = [guard_on(store, clock, (1, 2, 4)[i % 3], daily_usd=1.6) for i in range(16)]
    layouts = await asyncio.gather(*(g.layouts.pinned(DAY) for g in guards))
    assert len({(x.shards, tuple(sorted(x.carried.items()))) for x in layouts}) == 1
    assert layouts[0].carried["committed"] == 8 * W
    await store.add(f"budget:{DAY}", {"committed": -W // 2, "spent": W // 2})  # an old settle lands
    admitted = 0
    for i, guard in enumerate(guards):
        admitted += await spend(guard, 1, tag=f"g{i}-")
    assert admitted == 8  # $1.60 - $0.80 carried, not - $1.60 nor - $0
    assert await committed(store) == 8 * W + 8 * W  # the carry in the pin + the shards


async def test_days_without_legacy_items_carry_nothing(store: Store, clock: FakeClock) -> None:
    clock.now = NOON
    guard = guard_on(store, clock, 2, daily_usd=1.0)
    assert await guard.layouts.pinned(DAY) == Layout(DAY, 2, tuple(items(2)), {})
    assert await store.get(LAYOUT) == {"shards": 2}


async def test_a_reader_does_not_pin(clock: FakeClock) -> None:
    """Status before any request of the day shows the carry but writes nothing: the day's first
    writer still pins its own count."""
    clock.now = NOON
    store = MemoryStore(clock=clock)
    await legacy_day(store)
    reader = guard_on(store, clock, 4, daily_usd=1.0)
    assert (await reader.status())["global"]["committed_usd"] == "0.800000"
    assert await store.get(LAYOUT) is None
    writer = guard_on(store, clock, 2, daily_usd=1.0)
    assert await spend(writer, 1) == 1
    assert (await reader.layouts.view(DAY)).shards == 2


def test_layout_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"1\.\.100"):
        DayLayouts(MemoryStore(), shards=0, expires=lambda day: 0.0)


async def test_judging_budget_carries_no_legacy_router_items(clock: FakeClock) -> None:
    """Judging's guard (`judge:<day>`) kept its item names: the router's `budget:<day>` is not its."""
    clock.now = NOON
    store = MemoryStore(clock=clock)
    await legacy_day(store)
    judge = BudgetGuard(store, BudgetConfig(daily_usd=1.0), clock=clock, key_prefix="judge:")
    assert (await judge.layouts.pinned(DAY)).carried == {}
    assert await spend(judge, 12) == 10
