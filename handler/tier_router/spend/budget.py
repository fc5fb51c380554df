"""Daily budgets: pacing (a soft brake) and a hard cap, global and per router key.

Store items: the day items of `spend.shards` — `spend:<day>` (or its N shards, as the day's
layout pins them: `spend.layout`), which also hold the ledger's counters:

    committed, spent             the global budget (µ$)
    kc.<key>, ks.<key>           one router key's committed and spent (keys that have a cap)

`committed` = settled actual cost + outstanding reservations; the hard cap is enforced
on it. `spent` = settled actual cost only; pacing reads it, so a burst of in-flight
worst-case reservations (a premium request with no max_tokens reserves ~$1) does not
look like spend and downgrade traffic it should not.

Request lifecycle (see the package docstring for where the app calls what):

1. `pace(tier, priority, key)` — may move the request one tier down (never HIGH);
   reads the budget items at most once per `cache_ttl_s` per process.
2. `reserve(key, estimate(...), holder=request id)` — ONE conditional write on one shard:
   adds the worst case to `committed` and the key's `kc.<key>` under `limits` (each its
   shard's share of its cap) AND claims a hold field, `h.<expiry>.<holder>[/<key>]` = the
   amount. A shard that refuses sends it to the next; refused by all → `CapReached`.
3. `settle(reservation, actual, counts=ledger deltas)` — ONE write: releases the hold, adds
   `actual - reserved` to `committed` (and `kc.<key>`), `actual` to `spent` (and `ks.<key>`)
   and the ledger's counters, exactly once, even if the caller is cancelled; a write that
   fails is tried again (every write is idempotent). A reservation whose own write timed out
   settles so that its hold, should it land later, is refused (its counters: by the ledger).
4. Expiry: a hold still there `reservation_ttl_s` after it was taken is charged in full
   (`spent += amount`; `committed` keeps it) — its settle was lost, its process died, or its
   request ran longer. Runs in the background after a refusal or a failed reservation, when
   pacing reads an item with expired holds, and before `status`.

Why holds and what they cost: `spend.holds`.

Writes per request with a global and a key cap: 2 (reserve; settle-and-count) on one day item
(bench/store_ops.py).

Overrun bound (the guarantee): a reservation is admitted only if its shard's `committed` (and
`kc.<key>`) stays `<= share(cap - carried)` of that shard (carried: what the day committed
before its layout was pinned, `spend.layout`); the shares sum to that, so committed, summed over
the shards plus the carry, never exceeds the cap at any reservation. Settling moves it by
`actual - reserved`: negative unless a request under-reserved. Hence at all times, for each
scope (global, or a key), summed over the shards and the carry,

    spent <= committed <= cap + Σ over settled requests of max(0, actual_i - reserved_i)

and, with reservations that are upper bounds (below), the sum is 0: committed spend never
passes the cap. Expiry keeps it so: an unsettled hold stays in `committed` and becomes spend;
the settle of a request that outlived its hold finds the hold gone and charges nothing more.
Only with `on_store_error: allow` can requests go uncounted: those admitted while the store
could not take their reservation at all. Under-use: a refusal of `w` leaves less than
`shards × w` of the refusing cap unused (`spend.shards`).

Reservation bound (why that sum is 0): `reservation(candidates, body)` reserves, for the
dearest candidate, an upper bound of every billed input (`spend.reservation.bound` says why) ×
reservation_margin and n × the output limit; file parts are refused (400) under a hard cap. It
is NOT the routing estimate (`conversation_tokens`, ~chars/4, ~4× low on adversarial text).
Failures err the other way: a rollback or settle that cannot reach the store leaves the
reservation counted (over-counting, never under-counting), except with `on_store_error:
allow`, where requests admitted during an outage are not counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tier_router.outage import Outage
from tier_router.snapshot import Snapshot
from tier_router.spend.counters import DAY_S, day_end, day_key, elapsed_fraction
from tier_router.spend.holds import Holds
from tier_router.spend.layout import LEGACY_PREFIX, DayLayouts, Layout
from tier_router.spend.pricing import usd, worst_case_micro_usd
from tier_router.spend.reservation import CACHE_WRITE_MAX_MULTIPLIER, Bound, Priced
from tier_router.spend.shards import (
    key_tag,
    no_room,
    scope_fields,
    scope_status,
    share,
    spent_fields,
    summed,
    visiting_order,
)
from tier_router.spend.verdicts import CapReached, PaceDecision, Reservation, Scope
from tier_router.store.base import Store, StoreError, StoreUnavailable, Value

__all__ = ["BudgetGuard", "CapReached", "PaceDecision", "Priced", "Reservation"]

if TYPE_CHECKING:
    from tier_router.schema import BudgetConfig, Priority

logger = logging.getLogger(__name__)

_Day = Layout | StoreError | None  # the day's layout for a reservation; None: nothing to hold
_SEEN_MAX = 4096  # pacing snapshot entries (items) kept per process before pruning stale ones


@dataclass(slots=True)
class _Scope:
    kind: Scope
    cap: int
    tag: str | None = None  # the router key's field tag (`spend.shards.key_tag`); None: global
    label: str = ""

    @property
    def committed(self) -> str:
        return scope_fields(self.tag)[0]


class BudgetGuard:
    """One per process; share it across requests."""

    def __init__(
        self,
        store: Store,
        config: BudgetConfig,
        *,
        clock: Callable[[], float] = time.time,
        cache_ttl_s: float = 1.0,
        tiers: Collection[str] | None = None,
        key_prefix: str = "spend:",
        layouts: DayLayouts | None = None,
    ) -> None:
        """`tiers`: the rules file's tier names; downgrade entries naming others are dropped.
        `key_prefix`: the day items' (shared with the `SpendLedger` of the same store).
        `layouts`: the days' pinned layouts (`spend.layout`; share one with the ledger)."""
        self.store = store
        self.config = config
        self._clock = clock
        self._prefix = key_prefix
        downgrade = (config.pacing.downgrade or {}) if config.pacing.enabled else {}
        self.downgrade = {
            src: dst for src, dst in downgrade.items() if tiers is None or (src in tiers and dst in tiers)
        }
        self._global_cap = config.daily_micro()
        self._spent: Snapshot[dict[str, int]] = Snapshot(
            self._fetch_spent, ttl_s=cache_ttl_s, clock=clock, max_entries=_SEEN_MAX
        )
        self._tasks: set[asyncio.Future[Any]] = set()  # strong references to background writes
        self._outage = Outage(logger, "budget")
        self.holds = Holds(store, self._outage, ttl_s=config.reservation_ttl_s)
        legacy = LEGACY_PREFIX if key_prefix == "spend:" else None  # judging's kept its names
        self.layouts = layouts or DayLayouts(
            store, shards=config.shards, expires=self._expiry, prefix=key_prefix, legacy_prefix=legacy
        )
        self.layouts.capped_keys.update(key_tag(key) for key in config.key_daily_usd)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # --- items ------------------------------------------------------------------------

    def _scopes(self, router_key: str | None) -> list[_Scope]:
        """The caps that apply: the key's first (it names the refusal when both refuse)."""
        scopes = []
        key_cap = self.config.key_daily_micro(router_key)
        if key_cap is not None and router_key is not None:
            scopes.append(_Scope("key", key_cap, key_tag(router_key), f"router key {router_key!a}: "))
        if self._global_cap is not None:
            scopes.append(_Scope("global", self._global_cap))
        return scopes

    @staticmethod
    def _limits(scopes: Sequence[_Scope], layout: Layout, index: int) -> dict[str, int]:
        return {s.committed: share(layout.room(s.committed, s.cap), layout.shards, index) for s in scopes}

    def capped(self, router_key: str | None) -> bool:
        """True when a hard cap (global or this key's) applies to the key's requests."""
        return self._global_cap is not None or self.config.key_daily_micro(router_key) is not None

    def _expiry(self, day: str) -> float:
        return day_end(day, self.config.day_start_hour) + self.config.retention_days * DAY_S

    # --- estimating -------------------------------------------------------------------

    def estimate(
        self,
        candidates: Sequence[Priced],
        input_tokens: int,
        max_tokens: int | None,
        *,
        n: int = 1,
        cache_writes: bool = False,
    ) -> int:
        """The reservation for a request: the worst case over every candidate it may fall
        back to, with the input bound inflated by `reservation_margin` (and by the dearest
        cache-write multiplier when the request asks for caching), and the output limit per
        choice multiplied by `n`."""
        factor = self.config.reservation_margin * (CACHE_WRITE_MAX_MULTIPLIER if cache_writes else 1)
        inflated = math.ceil(max(input_tokens, 0) * factor)
        worst = 0
        for route in candidates:
            bounds = [b for b in (max_tokens, route.max_output) if b is not None and b > 0]
            output = min(bounds) if bounds else self.config.default_max_output_tokens
            worst = max(worst, worst_case_micro_usd(route.price, inflated, output * max(n, 1)))
        return worst

    def reservation(self, candidates: Sequence[Priced], billed: Bound) -> int:
        """The reservation for a chat body whose billed inputs are `billed`
        (`spend.reservation.bound(body, config.image_tokens)`, an upper bound of every billed
        input: see the module docstring) on the most expensive of `candidates`."""
        b = billed
        return self.estimate(candidates, b.input_tokens, b.max_tokens, n=b.n, cache_writes=b.cache_writes)

    # --- pacing -----------------------------------------------------------------------

    async def pace(self, tier: str | None, priority: Priority, router_key: str | None) -> PaceDecision:
        """Downgrade one step while spend runs ahead of an even spread over the day:
        LOW above 1+slack × pace, NORMAL above 1+2×slack, HIGH never."""
        unchanged = PaceDecision(tier)
        if priority == "high" or tier is None or tier not in self.downgrade:
            return unchanged
        now = self._clock()
        scopes = self._scopes(router_key)
        if not scopes:
            return unchanged
        try:
            layout = await self.layouts.pinned(day_key(now, self.config.day_start_hour))
        except StoreError as exc:
            self._outage.failed("pacing read", exc)
            return unchanged
        shards = [*(await self._spent.read(layout.items, now)).values(), layout.carried]
        pacing = self.config.pacing
        fraction = max(elapsed_fraction(now, self.config.day_start_hour), pacing.min_day_fraction)
        threshold = 1 + pacing.slack * (1 if priority == "low" else 2)
        ahead: tuple[float, _Scope, int] | None = None
        for scope in scopes:
            allowance = scope.cap * fraction
            spent_field = scope_fields(scope.tag)[1]
            used = summed(shards, [spent_field])[spent_field]
            ratio = used / allowance if allowance > 0 else (math.inf if used > 0 else 0.0)
            if ratio > threshold and (ahead is None or ratio > ahead[0]):
                ahead = (ratio, scope, used)
        if ahead is None:
            return unchanged
        ratio, scope, used = ahead
        ahead_by = "infinitely" if math.isinf(ratio) else f"{(ratio - 1) * 100:.0f}%"
        reason = (  # ASCII only, so it may go into a response header as is
            f"{scope.label}spend ${usd(used, 2)} is {ahead_by} ahead of pace "
            f"for ${usd(scope.cap, 2)}/day ({priority} priority)"
        )
        return PaceDecision(self.downgrade[tier], tier, reason)

    async def _fetch_spent(self, items: list[str], now: float) -> dict[str, dict[str, int]]:
        """Per item: its `spent` and every key's `ks.<key>` (what pacing sums)."""
        try:
            values: dict[str, Value] = await self.store.get_many(items)
        except StoreError as exc:
            self._outage.failed("pacing read", exc)
            values = {}  # no downgrades until the next refresh
        else:
            self._outage.ok()
            for item, value in values.items():
                if self.holds.due(value, now):
                    self._spawn(self.holds.reclaim(item, now))
        return {k: spent_fields(values.get(k, {})) for k in items}

    # --- the hard cap -----------------------------------------------------------------

    async def reserve(
        self, router_key: str | None, worst_micro: int, *, holder: str = "-"
    ) -> Reservation | CapReached:
        """Hold `worst_micro` against every cap that applies, as a hold named after `holder`
        (the request id). Safe under cancellation: a reservation the caller never received is
        released (the day's layout is read first, in the caller: cancelled there, nothing is held)."""
        if isinstance(worst_micro, bool) or not isinstance(worst_micro, int) or worst_micro < 0:
            raise ValueError(f"worst_micro must be a non-negative int, got {worst_micro!r}")
        now = self._clock()
        day = day_key(now, self.config.day_start_hour)
        scopes = self._scopes(router_key) if worst_micro else []
        layout: _Day = None
        if scopes:
            try:  # cached after the day's first request: no await
                layout = self.layouts.cached(day) or await self.layouts.pinned(day)
            except StoreError as exc:
                layout = exc
        task = self._spawn(self._reserve(router_key, worst_micro, holder, now, scopes, layout))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, task: asyncio.Future[Reservation | CapReached]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if isinstance(result, Reservation):
            self._spawn(self.settle(result, 0))

    async def _reserve(
        self, router_key: str | None, worst: int, holder: str, now: float, scopes: list[_Scope], layout: _Day
    ) -> Reservation | CapReached:
        day = day_key(now, self.config.day_start_hour)
        expires = self._expiry(day)
        if layout is None:  # nothing to hold: no cap, or 0 (a zero add is not portable: `holds.nonzero`)
            return Reservation(day, router_key, worst, (), expires)
        hold = self.holds.name(holder, now, scopes[0].tag)
        if isinstance(layout, StoreError):  # no write was tried: nothing to roll back
            self._outage.failed("reserve", layout)
            if self.config.on_store_error == "reject":
                raise layout
            # Fail open: serve; the settle finds the day's layout and charges the actual cost.
            return Reservation(day, router_key, worst, (), expires, hold, uncounted=True)
        items = layout.items
        item, failure, refused = items[0], None, 0
        for index in visiting_order(layout.shards):
            item = items[index]
            try:
                new = await self.holds.take(item, hold, worst, self._limits(scopes, layout, index), expires)
            except StoreUnavailable as exc:  # it may still land: this shard may hold it, stop here
                failure = exc
                break
            except StoreError as exc:  # not applied (e.g. the item is full, 400 KB): the next shard
                failure = exc
                self._spawn(self.holds.reclaim(item, now))
                continue
            if new is not None:
                self._outage.ok()
                return Reservation(day, router_key, worst, (item,), expires, hold)
            refused += 1
        if failure is not None and (isinstance(failure, StoreUnavailable) or not refused):
            self._outage.failed("reserve", failure)
            # The failed write may still land (a timeout is not a refusal): `item` may hold the
            # reservation now or later (the shards that refused hold nothing). Either way the
            # hold is found by id: released by the settle or the rollback below if it landed
            # first, reclaimed when it expires if it lands after them.
            self._spawn(self.holds.reclaim(item, now))  # e.g. an item too big to write
            if self.config.on_store_error == "reject":
                self._spawn(self._rollback(item, hold, worst, expires, confirmed=False))
                raise failure
            # Fail open: serve; the settle will charge the actual cost.
            return Reservation(day, router_key, worst, (item,), expires, hold, uncounted=True)
        for item in items:
            self._spawn(self.holds.reclaim(item, now))  # tidy up expired holds (background)
        scope = await self._refusing(scopes, layout, worst)
        retry = math.ceil(day_end(day, self.config.day_start_hour) - now)
        return CapReached(scope.kind, router_key, scope.cap, worst, max(retry, 1), self.config.cap_tier)

    async def _refusing(self, scopes: list[_Scope], layout: Layout, worst: int) -> _Scope:
        """Which cap refused: the key's when it had no room on any shard (one read, on refusals
        with both caps only), else the global one."""
        if len(scopes) == 1:
            return scopes[0]
        try:
            values = await self.store.get_many(layout.items)
        except StoreError:
            return scopes[-1]
        key = scopes[0]
        full = no_room(values, list(layout.items), key.committed, layout.room(key.committed, key.cap), worst)
        return key if full else scopes[-1]

    async def _rollback(self, item: str, hold: str, worst: int, expires: float, *, confirmed: bool) -> None:
        """Undo a reservation on `item`. Never raises: a hold left behind expires (charged)."""
        try:
            await self.holds.settle(item, hold, worst, 0, expires, confirmed=confirmed)
        except StoreError as exc:
            logger.warning("budget rollback of $%s on %s failed: %s", usd(worst), item, exc)

    async def settle(
        self, reservation: Reservation, actual_micro: int | None, *, counts: dict[str, int] | None = None
    ) -> bool:
        """Replace the reservation by the actual cost: 0 for a request that failed before a
        provider charged it, None when the cost is unknown (the reservation is charged).
        `counts`: the ledger's deltas for the request (`SpendLedger.deltas`), written in the
        same update when the reservation has one (returns True); False: the caller records them.

        Exactly once: later calls do nothing (and return True). Never raises StoreError (a
        `finally` path); the write finishes even if the caller is cancelled meanwhile.
        """
        if reservation.settled:
            return True
        actual = reservation.reserved if actual_micro is None else actual_micro
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise ValueError(f"actual_micro must be a non-negative int or None, got {actual_micro!r}")
        reservation.settled = True
        reservation.actual = actual
        if not reservation.items and not reservation.uncounted:
            return False
        carried = counts if counts and not reservation.uncounted else None
        await asyncio.shield(self._spawn(self._apply(reservation, actual, carried)))
        return carried is not None

    async def _apply(self, reservation: Reservation, actual: int, counts: dict[str, int] | None) -> None:
        r = reservation
        items = r.items
        if not items:  # admitted while the day's layout could not be read: charge where it is now
            try:
                items = ((await self.layouts.pinned(r.day)).items[0],)
            except StoreError as exc:
                self._outage.failed("settle", exc)  # not counted (logged once per outage)
                return
        for item in items:
            try:
                new = await self.holds.settle(
                    item, r.hold, r.reserved, actual, r.expires_at, confirmed=not r.uncounted, counts=counts
                )
            except StoreError as exc:
                self._outage.failed("settle", exc)
                logger.warning(
                    "budget settle on %s failed (%s): the hold stays and is charged in full at"
                    " expiry, $%s where $%s was spent (the request's spend counters are not written)",
                    item,
                    exc,
                    usd(r.reserved),
                    usd(actual),
                )
                continue
            if new is not None:  # our add returned everyone's fresh totals of what it moved
                seen = self._spent.get(item) or {}
                self._spent.amend(item, {**seen, **spent_fields(new)})

    # --- status and housekeeping ------------------------------------------------------

    async def status(self, router_keys: Sequence[str] = ()) -> dict[str, Any]:
        """Today's caps, commitments and pace, for the status endpoint (the shards summed)."""
        now = self._clock()
        day = day_key(now, self.config.day_start_hour)
        named: list[tuple[str | None, _Scope]] = [(None, s) for s in self._scopes(None)]
        for key in dict.fromkeys(router_keys):
            named += [(key, s) for s in self._scopes(key) if s.kind == "key"]
        layout = await self.layouts.view(day)
        items = layout.items
        values = await self.store.get_many(items) if named else {}
        stale = [item for item, value in values.items() if self.holds.due(value, now)]
        if stale:  # report what counts: reclaim expired holds first, then read again
            await asyncio.gather(*(self.holds.reclaim(item, now, force=True) for item in stale))
            values = await self.store.get_many(items)
        fraction = max(elapsed_fraction(now, self.config.day_start_hour), self.config.pacing.min_day_fraction)
        out: dict[str, Any] = {"day": day, "global": None, "keys": {}}
        for key, scope in named:
            entry = scope_status([*values.values(), layout.carried], scope.tag, scope.cap, fraction)
            if key is None:
                out["global"] = entry
            else:
                out["keys"][key] = entry
        return out

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # strong reference: the loop keeps only weak ones
        task.add_done_callback(self._tasks.discard)
        return task
