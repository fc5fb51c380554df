"""Budget holds under a misbehaving store: the constants, a guard factory, the counters of a
budget item, and store wrappers that lose, half-answer or delay the writes around a
reservation (`tests/resilience/test_holds_adversary*.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard
from tier_router.spend.holds import HOLD_PREFIX
from tier_router.store.base import Store, StoreUnavailable

from tests.support.clock import FakeClock
from tests.support.stores import Wrapped

DAY = "2026-11-23"
GLOBAL = f"spend:{DAY}"
KEY_ITEM = f"budget:{DAY}:key:team-a"
TTL = 60
CAP_USD = 1.0
WORST, ACTUAL = 900_000, 800_000  # each request reserves $0.90 of the $1 cap and costs $0.80


def guard_on(store: Any, clock: FakeClock, **config: Any) -> BudgetGuard:
    config = {"daily_usd": CAP_USD, "reservation_ttl_s": TTL, **config}
    return BudgetGuard(store, BudgetConfig(**config), clock=clock)


async def counters(store: Store, item: str = GLOBAL) -> tuple[int, int, int]:
    """(committed, spent, number of holds) of the global scope, or of team-a's (`KEY_ITEM`)."""
    value = await store.get(GLOBAL) or {}
    if item == KEY_ITEM:
        holds = sum(1 for name in value if name.startswith(HOLD_PREFIX) and name.endswith("/team-a"))
        return int(value.get("kc.team-a", 0)), int(value.get("ks.team-a", 0)), holds
    holds = sum(1 for name in value if name.startswith(HOLD_PREFIX))
    return int(value.get("committed", 0)), int(value.get("spent", 0)), holds


def is_settle(options: Mapping[str, Any], deltas: Mapping[str, int]) -> bool:
    """A settle's release with a cost (a rollback charges nothing: no `spent`)."""
    return options.get("release") is not None and "spent" in deltas and "expires_at" in options


def is_release(options: Mapping[str, Any], deltas: Mapping[str, int]) -> bool:
    """Any settle's or rollback's release (they set the item's expiry; an expiry write does not)."""
    return options.get("release") is not None and "expires_at" in options


def is_reclaim(options: Mapping[str, Any], deltas: Mapping[str, int]) -> bool:
    """An expiry write: release an expired hold and charge it in full (no item expiry given)."""
    return options.get("release") is not None and "expires_at" not in options


class Misbehaving(Wrapped):
    """Adds matching `which(options, deltas)` misbehave `times` times: `lost` raises a timeout
    without applying the write (DynamoDB never received it; SQLite's lock outlasted
    busy_timeout); `ambiguous` applies it and then raises the timeout (DynamoDB applied it and
    the response was lost: "outcome unknown")."""

    def __init__(
        self,
        inner: Store,
        which: Callable[[Mapping[str, Any], Mapping[str, int]], bool],
        how: str,
        times: int,
    ) -> None:
        super().__init__(inner)
        self.which, self.how, self.left = which, how, times
        self.hits = 0

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        if self.left > 0 and self.which(options, deltas):
            self.left -= 1
            self.hits += 1
            if self.how == "ambiguous":
                await self.inner.add(key, deltas, **options)
            raise StoreUnavailable("store add took longer than 1s")
        return await super().add(key, deltas, **options)


async def spent_reaches(store: Store, micro: int, timeout_s: float) -> bool:
    """Poll until `spent` on the global item reaches `micro` (a background retry landed it),
    for at most `timeout_s` of real time."""
    for _ in range(max(1, int(timeout_s / 0.01))):
        if (await counters(store))[1] >= micro:
            return True
        await asyncio.sleep(0.01)
    return False


class LateOn(Wrapped):
    """Reservation writes (claims of a hold) on `item` time out at the caller and are applied
    later, by `land()`; with `every_claim`, so are the settle's writes that claim a tombstone
    (every try). Other writes go through, and after `land()` every write does (the store
    answers on time again)."""

    def __init__(self, inner: Store, item: str, *, every_claim: bool = False) -> None:
        super().__init__(inner)
        self.item = item
        self.every_claim = every_claim
        self.stalled = True
        self.parked: list[tuple[str, dict[str, int], dict[str, Any]]] = []

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        claim = options.get("claim")
        late = self.every_claim or (claim is not None and claim[0].startswith(HOLD_PREFIX))
        if self.stalled and key == self.item and claim is not None and late:
            self.parked.append((key, dict(deltas), options))
            raise StoreUnavailable("store add took longer than 1s")
        return await super().add(key, deltas, **options)

    async def land(self, *, reverse: bool = False) -> list[dict[str, int] | None]:
        """Apply the parked writes in the order they were sent (or the reverse)."""
        self.stalled = False
        parked = self.parked[::-1] if reverse else self.parked
        out = [await self.inner.add(key, deltas, **options) for key, deltas, options in parked]
        self.parked.clear()
        return out
