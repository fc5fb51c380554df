"""Budget reservations are holds keyed by request: whatever order a late-landing reservation
write, its settle and a reclaim happen in, the reservation counts once and stops counting
when it expires. Runs on memory, SQLite and DynamoDB (moto), time moved by the fake clock."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.holds import HOLD_PREFIX, hold_expiry
from tier_router.store.base import Store, StoreUnavailable

from tests.support.clock import FakeClock, at
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio

DAY = "2026-11-23"
GLOBAL = f"spend:{DAY}"
TTL = 60
WORST, ACTUAL = 300_000, 1_234


class Late(Wrapped):
    """While `stalled`, a reservation write (an add with a claim) times out at the caller and
    is applied later, by `land()` — as a write that reached DynamoDB after the deadline, or a
    SQLite write that waited for another process's lock."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.stalled = True
        self.parked: list[tuple[str, dict[str, int], dict[str, Any]]] = []

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        if self.stalled and options.get("claim") is not None:
            self.parked.append((key, dict(deltas), options))
            raise StoreUnavailable("store add took longer than 1s")
        return await super().add(key, deltas, **options)

    async def land(self) -> None:
        for key, deltas, options in self.parked:
            await self.inner.add(key, deltas, **options)
        self.parked.clear()


async def background_writes_done(guard: BudgetGuard) -> None:
    """Wait for the guard's background writes, however slow the store: a fixed sleep lost this
    race on a loaded machine against moto."""
    if guard._tasks:
        _, pending = await asyncio.wait(set(guard._tasks), timeout=30)
        assert not pending, f"background writes still running after 30 s: {pending}"


def guard_on(store: Any, clock: FakeClock, **config: Any) -> BudgetGuard:
    return BudgetGuard(store, BudgetConfig(daily_usd=1.0, reservation_ttl_s=TTL, **config), clock=clock)


async def counters(store: Store) -> tuple[int, int, int]:
    """(committed, spent, number of holds) on the global item."""
    item = await store.get(GLOBAL) or {}
    holds = sum(1 for name in item if name.startswith(HOLD_PREFIX))
    return int(item.get("committed", 0)), int(item.get("spent", 0)), holds


ORDERS = list(itertools.permutations(["land", "settle", "expire"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_a_late_reservation_write_counts_once_in_any_order(
    store: Store, clock: FakeClock, order: tuple[str, ...]
) -> None:
    clock.now = at(2026, 11, 23, 12)
    late = Late(store)
    guard = guard_on(late, clock)  # on_store_error: allow (the default) serves the request
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    assert held.uncounted
    late.stalled = False
    for step in order:
        if step == "land":
            await late.land()
        elif step == "settle":
            await guard.settle(held, ACTUAL)
        else:  # the hold's expiry passes; a status read reclaims what expired
            clock.advance(TTL + 1)
            await guard.status()
    clock.advance(TTL + 1)
    await guard.status()
    # Only a hold that expired before its settle is charged in full (its request outlived it).
    charged = WORST if order.index("land") < order.index("expire") < order.index("settle") else ACTUAL
    assert await counters(store) == (charged, charged, 0)


async def test_a_reservation_never_settled_is_charged_in_full_at_expiry(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A process that died mid-request (a Lambda timeout, a kill -9), or a settle that never
    reached the store: what the provider billed is unknown, the reservation bounds it — so it
    is charged in full and the cap still holds (freeing it would let spend pass the cap)."""
    clock.now = at(2026, 11, 23, 12)
    first = guard_on(store, clock)
    assert isinstance(await first.reserve(None, 800_000, holder="dies"), Reservation)
    other = guard_on(store, clock)  # another process
    assert isinstance(await other.reserve(None, 800_000, holder="waits"), CapReached)
    clock.advance(TTL + 1)
    with caplog.at_level(logging.WARNING, "tier_router.spend.budget"):
        status = await other.status()
    assert any("charged $0.800000 in full" in r.getMessage() for r in caplog.records)
    assert status["global"]["unsettled_usd"] == "0.800000"
    assert status["global"]["in_flight"] == 0
    assert await counters(store) == (800_000, 800_000, 0)
    assert isinstance(await other.reserve(None, 800_000, holder="waits"), CapReached)
    assert isinstance(await other.reserve(None, 200_000, holder="fits"), Reservation)


async def test_reject_mode_rollback_refuses_a_reservation_landing_later(
    store: Store, clock: FakeClock
) -> None:
    clock.now = at(2026, 11, 23, 12)
    late = Late(store)
    guard = guard_on(late, clock, on_store_error="reject")
    with pytest.raises(StoreUnavailable):
        await guard.reserve(None, WORST, holder="req-2")
    await background_writes_done(guard)  # the rollback runs in the background: nothing to release yet,
    late.stalled = False  # so it leaves a tombstone ...
    await late.land()  # ... and the write that lands afterwards is refused
    assert await counters(store) == (0, 0, 0)
    clock.advance(TTL + 1)
    status = await guard.status()
    assert status["global"]["committed_usd"] == "0.000000"
    assert status["global"]["in_flight"] == 0


async def test_pacing_reads_expire_holds_in_the_background(store: Store, clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 12)
    guard = guard_on(store, clock, pacing={"downgrade": {"premium": "budget"}})
    assert isinstance(await guard.reserve(None, WORST, holder="dies"), Reservation)
    clock.advance(TTL + 1)
    await guard.pace("premium", "low", None)
    for _ in range(100):
        if (await counters(store))[2] == 0:
            break
        await asyncio.sleep(0.01)
    assert await counters(store) == (WORST, WORST, 0)


async def test_a_failed_settle_write_is_tried_again(store: Store, clock: FakeClock) -> None:
    """Settle writes are idempotent, so one that timed out is simply sent again."""
    clock.now = at(2026, 11, 23, 12)
    flaky = FailSettles(store, failures=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-3")
    assert isinstance(held, Reservation)
    await guard.settle(held, ACTUAL)
    assert flaky.failed == 1
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


class FailSettles(Wrapped):
    """The first `failures` settle writes (adds with a release) time out after applying."""

    def __init__(self, inner: Store, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures
        self.failed = 0

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        new = await super().add(key, deltas, **options)
        if options.get("release") is not None and self.failed < self.failures:
            self.failed += 1
            raise StoreUnavailable("store add took longer than 1s (it landed)")
        return new


async def test_hold_names_carry_expiry_and_holder(clock: FakeClock) -> None:
    from tier_router.store.memory import MemoryStore

    clock.now = at(2026, 11, 23, 12)
    store = MemoryStore(clock=clock)
    guard = guard_on(store, clock)
    a = await guard.reserve(None, 10, holder="req-x")
    b = await guard.reserve(None, 10, holder="req-x")  # same request id (an on_cap retry): distinct holds
    assert isinstance(a, Reservation)
    assert isinstance(b, Reservation)
    assert a.hold != b.hold
    assert ".req-x." in a.hold
    assert hold_expiry(a.hold) == clock.now + TTL
    assert hold_expiry("committed") is None
