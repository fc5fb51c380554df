"""Adversary (issue 18): a settle that arrives after its hold expired, was charged in full AND its
tombstone was swept (a request that ran longer than twice `reservation_ttl_s`, or a settle queued
behind a long outage). The request's reservation was charged by the reclaim; the ledger's counters
for the request ride on the settle (`counts`), and `BudgetGuard.settle` answers True ("written"),
so the caller does not record them itself: they must land, exactly once.
"""

from __future__ import annotations

import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, Reservation
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio

NOON = at(2026, 11, 23, 12)
ITEM = "spend:2026-11-23"
TTL = 60
WORST, ACTUAL = 300_000, 120_000
COUNTS = {"requests": 1, "total": ACTUAL, "tier.premium": ACTUAL}


class LosesAnswers(Wrapped):
    """The adds whose 1-based ordinal is in `lost` land, then report a timeout."""

    def __init__(self, inner: Store, lost: set[int]) -> None:
        super().__init__(inner)
        self.lost, self.adds = lost, 0

    async def add(self, key, deltas, **options):  # type: ignore[no-untyped-def]
        from tier_router.store.base import StoreUnavailable

        new = await self.inner.add(key, deltas, **options)
        self.adds += 1
        if self.adds in self.lost:
            raise StoreUnavailable("landed, then timed out (test)")
        return new


async def reclaimed_and_swept(guard: BudgetGuard, clock: FakeClock) -> Reservation:
    held = await guard.reserve("k", WORST, holder="long")
    assert isinstance(held, Reservation)
    clock.now += TTL + 1
    assert await guard.holds.reclaim(ITEM, clock.now, force=True) == WORST  # charged in full
    clock.now += 2 * TTL
    await guard.holds.reclaim(ITEM, clock.now, force=True)  # the tombstone is swept
    return held


@pytest.mark.parametrize("lost", [set(), {6}], ids=["answered", "count-write-answer-lost"])
async def test_a_settle_after_the_tombstone_was_swept_still_counts_the_request_once(
    lost: set[int],
) -> None:
    clock = FakeClock()
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    store = LosesAnswers(inner, lost)
    guard = BudgetGuard(store, BudgetConfig(daily_usd=10.0, reservation_ttl_s=TTL), clock=clock)  # type: ignore[arg-type]
    held = await reclaimed_and_swept(guard, clock)
    assert not any(name.startswith(("h.", "t.")) for name in (await inner.get(ITEM) or {}))
    # adds so far: the reservation, the reclaim, the sweep; the settle's: release the hold
    # (none), release the tombstone (none), then count (6: its answer lost in one run).

    assert await guard.settle(held, ACTUAL, counts=dict(COUNTS)) is True  # "counts written"
    for task in list(guard._tasks):
        await task
    value = await inner.get(ITEM) or {}
    assert {name: value.get(name) for name in COUNTS} == COUNTS  # the ledger saw the request once
    assert value["spent"] == value["committed"] == WORST  # its reservation, charged once
    clock.now += 3 * TTL
    await guard.holds.reclaim(ITEM, clock.now, force=True)  # the mark is swept like a tombstone
    assert not any(name.startswith(("h.", "t.")) for name in (await inner.get(ITEM) or {}))
