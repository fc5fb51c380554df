"""Holds: each budget reservation is a field on the budget item it counts against, named
after its request, so it is settled, rolled back and expired by id — exactly once.

    h.<expiry>.<id> = µ$   a hold: the amount is in `committed`, not yet settled
    t.<expiry>.<id> = 1    a tombstone: this reservation is finished; its hold may not land

Every write is one atomic `Store.add` whose conditions make it idempotent, so retrying a write
whose outcome is unknown (a timeout) is safe, and whatever order a late write, its settle
and an expiry land in, the reservation counts once:

- take: `committed += worst` under the cap, claim the hold — only if neither the hold nor its
  tombstone exists (a reservation write that lands after its request finished is refused);
- settle a confirmed reservation: release the hold, `committed += actual - worst`,
  `spent += actual`. If the hold is gone it expired and was charged in full: nothing to do;
- settle a reservation whose write timed out (it may land later, or never): the same release
  plus a tombstone; or, when the hold is not there, `committed += actual`, `spent += actual`
  plus a tombstone — only if there is no hold and no tombstone yet;
- expire (reclaim) a hold past its expiry: release it and charge its full amount to `spent`
  (`committed` unchanged), plus a tombstone. A request that never settles — its settle was
  lost, its process died, it ran past `reservation_ttl_s` — is charged its reservation, an
  upper bound of its cost, so the cap still holds. Tombstones live `2 × reservation_ttl_s`
  and are dropped in batches.

Cost: each in-flight reservation is a ~60-byte field on the day item (tombstones exist only
for reservations whose write timed out, and expired ones). DynamoDB bills a write by the
item's size in KB: ~1 WCU up to ~15 requests in flight per budget scope, ~60 WCU at 1,000 (the
adversary suite measured 46-62 KB); an item holds at most 400 KB (~6,500 in flight). The day
items are sharded (`spend.shards`): N shards hold N× the holds and the write rate.

A hold of a key with a cap is named `h.<expiry>.<id>/<key>`: its amount is in `committed` AND
`kc.<key>`, and every write that moves it moves both (`spend.shards.scope_deltas`). A settle
may carry the ledger's counters for the request (`counts`): they land in the same write, or —
when the hold is gone because it expired and was reclaimed — in one more write that removes the
reclaim's tombstone (so a retried settle cannot count them twice); when that tombstone was
already swept (the request outlived 2 × `reservation_ttl_s`), the first try of the settle counts
them in a write that claims a mark `t.<expiry>.<id>+` (at most once; a later try cannot tell a
swept tombstone from its own earlier write having landed, so it counts nothing).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os

from tier_router.outage import Outage
from tier_router.spend.pricing import usd
from tier_router.spend.shards import HOLD_PREFIX, KEY_MARK, hold_key_tag, scope_deltas, unsettled_deltas
from tier_router.store.base import Store, StoreError, StoreUnavailable, Value

logger = logging.getLogger("tier_router.spend.budget")

TOMB_PREFIX = "t."
COUNTED_MARK = "+"
"""`t.<expiry>.<id>+`: a settle counted its request after the hold's tombstone was swept."""
RECLAIM_BATCH = 64
"""Holds released (concurrently) or tombstones dropped (in one write) per step of a reclaim."""
RECLAIM_MAX = 1024
"""Holds and tombstones handled per reclaim pass (the rest: the next pass)."""
RECLAIM_EVERY_S = 1.0
"""Per item and process: refusals at the cap do not each re-read the item."""
SETTLE_TRIES = 3
SETTLE_BACKOFF_S = (0.2, 0.8)
"""A settle whose write failed is tried again after these pauses (its writes are idempotent)."""
_REMEMBERED_MAX = 4096


def stamp(name: str, prefix: str) -> int | None:
    """The expiry in a hold's or tombstone's field name; None for any other field."""
    if not name.startswith(prefix):
        return None
    text = name[len(prefix) :].partition(".")[0]
    return int(text) if text.isdigit() else None


def hold_expiry(name: str) -> int | None:
    return stamp(name, HOLD_PREFIX)


def tomb_of(hold: str) -> str:
    """`h.<expiry>.<id>` → `t.<expiry>.<id>` (the tombstone's own expiry is later: `stamp`
    of a tombstone is its hold's expiry; it is dropped one ttl after that)."""
    return TOMB_PREFIX + hold[len(HOLD_PREFIX) :]


def expired_holds(value: Value, now: float) -> list[tuple[str, int]]:
    """(field, amount) of the holds in `value` whose expiry is `<= now`."""
    out = []
    for name, amount in value.items():
        expiry = hold_expiry(name)
        if expiry is not None and expiry <= now and isinstance(amount, int):
            out.append((name, amount))
    return out


def expired_tombs(value: Value, now: float, ttl_s: float) -> list[str]:
    """Tombstones past their own expiry (their hold's expiry + one ttl)."""
    return [n for n in value if (s := stamp(n, TOMB_PREFIX)) is not None and s + ttl_s <= now]


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

    def reseed(self) -> None:
        """A new process tag and sequence for hold names: for a copy of this process that must not
        repeat the original's names (a SnapStart restore; `tier_router.snapstart`)."""
        self._process = os.urandom(3).hex()
        self._sequence = itertools.count(1)

    def name(self, holder: str, now: float, key_tag: str | None = None) -> str:
        """A fresh hold's field name: its expiry, the holder, a process-unique suffix, and the
        router key whose cap it also counts against (`spend.shards.key_tag`)."""
        holder = holder.replace(KEY_MARK, "%2F")
        name = f"{HOLD_PREFIX}{math.ceil(now + self.ttl_s)}.{holder}.{self._process}{next(self._sequence):x}"
        return name if key_tag is None else f"{name}{KEY_MARK}{key_tag}"

    async def take(
        self, item: str, hold: str, amount: int, limits: dict[str, int], expires: float
    ) -> dict[str, int] | None:
        """Add `amount` to `committed` (and the hold's key's `kc.<key>`) under `limits` (a cap
        per field) and claim `hold`; None when a cap refuses (or, for a write landing after its
        reservation finished, its tombstone)."""
        return await self.store.add(
            item,
            scope_deltas(hold_key_tag(hold), amount, 0),
            expires_at=expires,
            limits=limits,
            claim=(hold, amount),
            absent=(tomb_of(hold),),
        )

    async def settle(
        self,
        item: str,
        hold: str,
        reserved: int,
        actual: int,
        expires: float,
        *,
        confirmed: bool,
        counts: dict[str, int] | None = None,
    ) -> dict[str, int] | None:
        """Replace the hold by `actual` (0 rolls back). `confirmed`: the hold's write is known
        to have landed. `counts` (confirmed only): the ledger's deltas for the request, written
        with the settle (see the module docstring). Idempotent; tried SETTLE_TRIES times.
        Raises StoreError when every try failed."""
        if counts and not confirmed:
            raise ValueError("counts ride only on a confirmed settle")
        for attempt in range(SETTLE_TRIES):
            try:
                if confirmed:
                    return await self._settle_confirmed(
                        item, hold, reserved, actual, expires, counts or {}, first=attempt == 0
                    )
                return await self._settle_once(item, hold, reserved, actual, expires, confirmed)
            except StoreUnavailable:
                if attempt + 1 == SETTLE_TRIES:
                    raise
                await asyncio.sleep(SETTLE_BACKOFF_S[min(attempt, len(SETTLE_BACKOFF_S) - 1)])
        raise AssertionError("unreachable")

    async def _settle_confirmed(
        self,
        item: str,
        hold: str,
        reserved: int,
        actual: int,
        expires: float,
        counts: dict[str, int],
        *,
        first: bool,
    ) -> dict[str, int] | None:
        held = {**scope_deltas(hold_key_tag(hold), actual - reserved, actual), **counts}
        new = await self.store.add(item, held, expires_at=expires, release=hold)
        if new is not None or not counts:
            return new
        # The hold is gone: reclaimed (charged in full, its tombstone left) or released by an
        # earlier try of this settle whose answer was lost. Count the request only in the first
        # case, by removing the tombstone in the same write: a second try finds none.
        if await self.store.add(item, counts, expires_at=expires, release=tomb_of(hold)) is None and first:
            # No hold and no tombstone on the first try: no earlier try of this settle exists, so
            # the hold was reclaimed and its tombstone swept since (the request outlived 2 × ttl).
            # Count it, under a mark (swept like a tombstone) that refuses a second such write for
            # this hold; a later try of this settle, not being first, counts nothing (at most once).
            await self.store.add(item, counts, expires_at=expires, claim=(tomb_of(hold) + COUNTED_MARK, 1))
        return None

    async def _settle_once(
        self, item: str, hold: str, reserved: int, actual: int, expires: float, confirmed: bool
    ) -> dict[str, int] | None:
        held = scope_deltas(hold_key_tag(hold), actual - reserved, actual)
        tomb = (tomb_of(hold), 1)
        new = await self.store.add(item, held, expires_at=expires, release=hold, claim=tomb)
        if new is not None:
            return new
        # No hold: its write never landed (yet). Charge the actual cost, and leave a tombstone
        # that refuses the hold if it lands later. None again: the hold landed meanwhile, or an
        # earlier try of this settle already finished it.
        unheld = {**scope_deltas(hold_key_tag(hold), actual, actual), "unheld": 1}
        new = await self.store.add(item, unheld, expires_at=expires, claim=tomb, absent=(hold,))
        if new is not None:
            return new
        return await self.store.add(item, held, expires_at=expires, release=hold, claim=tomb)

    def due(self, value: Value, now: float) -> bool:
        """True when `value` (a budget item) holds expired holds or tombstones."""
        return bool(expired_holds(value, now) or expired_tombs(value, now, self.ttl_s))

    async def reclaim(self, item: str, now: float, *, force: bool = False) -> int:
        """Charge the expired holds on `item` in full and drop expired tombstones; returns the
        micro-dollars charged. At most once per RECLAIM_EVERY_S per item and process unless
        `force`. Never raises."""
        if not force and self._next_reclaim.get(item, 0.0) > now:
            return 0
        if len(self._next_reclaim) > _REMEMBERED_MAX:
            self._next_reclaim.clear()
        self._next_reclaim[item] = now + RECLAIM_EVERY_S
        try:
            value = await self.store.get(item) or {}
        except StoreError as exc:
            self._outage.failed("reclaim", exc)
            return 0
        stale = expired_holds(value, now)[:RECLAIM_MAX]
        charged = 0
        for i in range(0, len(stale), RECLAIM_BATCH):
            batch = stale[i : i + RECLAIM_BATCH]
            charged += sum(
                await asyncio.gather(*(self._expire(item, name, amount) for name, amount in batch))
            )
        tombs = expired_tombs(value, now, self.ttl_s)
        for i in range(0, min(len(tombs), RECLAIM_MAX), RECLAIM_BATCH):
            try:
                await self.store.add(item, {"swept": 1}, drop=tombs[i : i + RECLAIM_BATCH])
            except StoreError as exc:
                self._outage.failed("reclaim", exc)
                break
        if charged:
            logger.warning(
                "budget: charged $%s in full for %d reservation(s) on %s never settled within"
                " reservation_ttl_s (a settle that was lost, a process that stopped mid-request, or a"
                " request that ran longer)",
                usd(charged),
                len(stale),
                item,
            )
        return charged

    async def _expire(self, item: str, name: str, amount: int) -> int:
        try:
            new = await self.store.add(
                item, unsettled_deltas(hold_key_tag(name), amount), release=name, claim=(tomb_of(name), 1)
            )
        except StoreError as exc:
            self._outage.failed("reclaim", exc)
            return 0
        return 0 if new is None else amount  # None: settled or expired meanwhile
