"""Holds: each budget reservation is a field on the budget item it counts against, named
after its request, so it can be settled, rolled back and reclaimed by id — exactly once each.

A hold is `h.<expiry epoch s>.<holder>` = micro-dollars, written in the same atomic add that
puts the amount on `committed` (`Store.add(claim=...)`); settling or rolling back releases
it in the same add that moves `committed` (`Store.add(release=...)`). Every write is
idempotent, so whatever order a late write, its settle and a reclaim land in, the amount is
counted once: a settle that finds no hold charges the actual cost alone; a hold that lands
after its settle expires and is reclaimed (`-amount` on `committed`, released once).

Why holds (the leak they close): a reservation write that misses the store deadline may still
land (DynamoDB received it; SQLite's thread applies it when the lock frees). Without an id it
could never be matched and stayed in `committed` for the rest of the day. With one, a late
write is either released by its settle (if it landed first) or expires and is reclaimed, so
`committed` returns to settled spend + live holds within `reservation_ttl_s` (+ the next
reclaim), whatever the store did. Cost: each in-flight reservation is a ~50-byte field on
the day item (DynamoDB bills writes per KB of item: 20 requests in flight ≈ 1 KB; an item
holds at most 400 KB, i.e. ~7,000 reservations in flight per budget scope).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os

from tier_router.outage import Outage
from tier_router.spend.pricing import usd
from tier_router.store.base import Store, StoreError, Value

logger = logging.getLogger("tier_router.spend.budget")

HOLD_PREFIX = "h."
RECLAIM_MAX = 64
"""Expired holds released per reclaim pass (the rest: the next pass)."""
RECLAIM_EVERY_S = 1.0
"""Per item and process: refusals at the cap do not each re-read the item."""
_REMEMBERED_MAX = 4096


def hold_expiry(name: str) -> int | None:
    """The expiry encoded in a hold field's name; None for any other field."""
    if not name.startswith(HOLD_PREFIX):
        return None
    stamp = name[len(HOLD_PREFIX) :].partition(".")[0]
    return int(stamp) if stamp.isdigit() else None


def expired_holds(value: Value, now: float) -> list[tuple[str, int]]:
    """(field, amount) of the holds in `value` whose expiry is `<= now`."""
    out = []
    for name, amount in value.items():
        expiry = hold_expiry(name)
        if expiry is not None and expiry <= now and isinstance(amount, int):
            out.append((name, amount))
    return out


def held_amounts(value: Value) -> list[int]:
    """The amounts of every hold in `value`, expired or not."""
    return [v for name, v in value.items() if hold_expiry(name) is not None and isinstance(v, int)]


def nonzero(deltas: dict[str, int]) -> dict[str, int]:
    """Drop zero deltas. Besides saving bytes: moto's DynamoDB (unlike AWS, reportedly)
    leaves unchanged fields out of UpdateItem's UPDATED_NEW, which `DynamoDBStore.add`
    then reports as a StoreError."""
    return {k: v for k, v in deltas.items() if v != 0}


class Holds:
    """The hold operations on budget items. One per `BudgetGuard`."""

    def __init__(self, store: Store, outage: Outage, *, ttl_s: float) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._outage = outage
        self._process = os.urandom(3).hex()  # holders are request ids; this makes them unique anyway
        self._sequence = itertools.count(1)
        self._next_reclaim: dict[str, float] = {}

    def name(self, holder: str, now: float) -> str:
        """A fresh hold's field name: its expiry, the holder, and a process-unique suffix."""
        return f"{HOLD_PREFIX}{math.ceil(now + self.ttl_s)}.{holder}.{self._process}{next(self._sequence):x}"

    async def take(
        self, item: str, hold: str, amount: int, cap: int, expires: float
    ) -> dict[str, int] | None:
        """Add `amount` to `committed` under `cap` and claim `hold`; None when the cap refuses."""
        return await self.store.add(
            item, {"committed": amount}, expires_at=expires, limits={"committed": cap}, claim=(hold, amount)
        )

    async def release(self, items: list[str], hold: str, amount: int, expires: float) -> None:
        """Roll `hold` back wherever it is. Never raises: a hold left behind is reclaimed."""
        for item in items:
            try:
                await self.store.add(item, {"committed": -amount}, expires_at=expires, release=hold)
            except StoreError as exc:  # over-counts until the hold expires: the safe direction
                logger.warning("budget rollback of $%s on %s failed: %s", usd(amount), item, exc)

    async def settle(
        self, item: str, hold: str, reserved: int, actual: int, expires: float
    ) -> dict[str, int] | None:
        """Replace the hold by `actual` (committed and spent); where there is no hold (its write
        never landed, or it was reclaimed), charge `actual` alone. Raises StoreError."""
        held = nonzero({"committed": actual - reserved, "spent": actual})
        new = await self.store.add(item, held, expires_at=expires, release=hold)
        unheld = nonzero({"committed": actual, "spent": actual})
        if new is None and unheld:
            new = await self.store.add(item, unheld, expires_at=expires)
        return new

    async def reclaim(self, item: str, now: float, *, force: bool = False) -> int:
        """Release the expired holds on `item` (at most RECLAIM_MAX); the micro-dollars freed.
        At most once per RECLAIM_EVERY_S per item and process unless `force`. Never raises."""
        if not force and self._next_reclaim.get(item, 0.0) > now:
            return 0
        if len(self._next_reclaim) > _REMEMBERED_MAX:
            self._next_reclaim.clear()
        self._next_reclaim[item] = now + RECLAIM_EVERY_S
        try:
            value = await self.store.get(item)
        except StoreError as exc:
            self._outage.failed("reclaim", exc)
            return 0
        stale = expired_holds(value or {}, now)[:RECLAIM_MAX]
        if not stale:
            return 0
        freed = sum(await asyncio.gather(*(self._reclaim_one(item, name, amount) for name, amount in stale)))
        if freed:
            logger.warning(
                "budget: reclaimed $%s held by %d expired reservation(s) on %s (never settled: a write"
                " that landed after its deadline, or a process that stopped mid-request)",
                usd(freed),
                len(stale),
                item,
            )
        return freed

    async def _reclaim_one(self, item: str, name: str, amount: int) -> int:
        try:
            new = await self.store.add(item, {"committed": -amount}, release=name)
        except StoreError as exc:
            self._outage.failed("reclaim", exc)
            return 0
        return 0 if new is None else amount  # None: settled or reclaimed meanwhile
