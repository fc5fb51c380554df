"""Daily budgets: pacing (a soft brake) and a hard cap, global and per router key.

Store items, one per budget day and scope (prefix `budget:`):

    budget:<day>                 the global budget      {"committed": µ$, "spent": µ$}
    budget:<day>:key:<key id>    one router key's budget (only for keys that have a cap)

`committed` = settled actual cost + outstanding reservations; the hard cap is enforced
on it. `spent` = settled actual cost only; pacing reads it, so a burst of in-flight
worst-case reservations (a premium request with no max_tokens reserves ~$1) does not
look like spend and downgrade traffic it should not.

Request lifecycle (see the package docstring for where the app calls what):

1. `pace(tier, priority, key)` — may move the request one tier down (never HIGH);
   reads the budget items at most once per `cache_ttl_s` per process.
2. `reserve(key, estimate(...), holder=request id)` — atomically adds the worst case to
   `committed` under `limits={"committed": cap}` AND claims a hold field on the same item,
   `h.<expiry>.<holder>` = the amount (one write): key item first, then global; if the global
   one refuses, the key's hold is rolled back. Refusal → `CapReached`.
3. `settle(reservation, actual)` — releases the hold and adds `actual - reserved` to
   `committed` and `actual` to `spent` in one write, exactly once, even if the caller is
   cancelled; a write that fails is tried again (every write is idempotent). A reservation
   whose own write timed out settles so that its hold, should it land later, is refused.
4. Expiry: a hold still there `reservation_ttl_s` after it was taken is charged in full
   (`spent += amount`; `committed` keeps it) — its settle was lost, its process died, or its
   request ran longer. Runs in the background after a refusal or a failed reservation, when
   pacing reads an item with expired holds, and before `status`.

Why holds and what they cost: `spend.holds`.

Overrun bound (the guarantee): every reservation is admitted only if `committed` stays
`<= cap`, so committed never exceeds the cap at any reservation. Settling moves it by
`actual - reserved`; that is negative (frees room) unless a request under-reserved. Hence
at all times, for each scope,

    spent <= committed <= cap + Σ over settled requests of max(0, actual_i - reserved_i)

and, with reservations that are upper bounds (see below), the sum is 0: committed spend never
passes the cap. Expiry keeps it so: an unsettled hold stays in `committed` and becomes spend
(its reservation bounds its cost); the settle of a request that outlived its hold finds the
hold gone and charges nothing more. Only with `on_store_error: allow` can requests go
uncounted: those admitted while the store could not take their reservation at all.

Reservation bound (why that sum is 0): `reservation(candidates, body)` reserves, for the
dearest candidate,

    input  = ceil(B × reservation_margin × (2 if the body has cache_control else 1)) × price.input
    output = n × min(max_tokens or max_completion_tokens (the larger), max_output)
             × price.output   (max_output, else default_max_output_tokens, when absent)

where B (`spend.reservation.bound`) counts every string of the body — message text,
tool_calls names and arguments, tools/functions, response_format schemas, audio data — at
one token per UTF-8 byte (no tokenizer emits a token for less than one byte), JSON
punctuation, 8 tokens per message, 16 per request, 512 when tools are present, and
`image_tokens` (4,000) per image part. So `actual <= reserved` for any provider that bills
within its documented rules and enforces the output limit; file parts cannot be bounded
and are refused (400) while a hard cap applies. `reservation_margin` is headroom on top of a
bound, not a correction of an estimate. The bound is NOT the routing estimate
(`conversation_tokens`, ~chars/4), which stays cheap and can be ~4× low on adversarial text.
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from tier_router.outage import Outage
from tier_router.snapshot import Snapshot
from tier_router.spend.counters import DAY_S, day_end, day_key, elapsed_fraction
from tier_router.spend.holds import Holds, held_amounts
from tier_router.spend.pricing import usd, worst_case_micro_usd
from tier_router.spend.reservation import CACHE_WRITE_MAX_MULTIPLIER, Bound
from tier_router.store.base import Store, StoreError, Value

if TYPE_CHECKING:
    from tier_router.schema import BudgetConfig, Price, Priority

logger = logging.getLogger(__name__)

Scope = Literal["global", "key"]
_SEEN_MAX = 4096  # pacing snapshot entries (items) kept per process before pruning stale ones


class Priced(Protocol):
    """What `estimate` needs from a candidate (`routing.engine.ModelRoute` fits)."""

    @property
    def price(self) -> Price: ...

    @property
    def max_output(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class PaceDecision:
    """The tier to use. `reason` is ASCII (header-safe) and set only when downgraded."""

    tier: str | None
    downgraded_from: str | None = None
    reason: str | None = None

    @property
    def downgraded(self) -> bool:
        return self.downgraded_from is not None


@dataclass(slots=True)
class Reservation:
    """Money held for one request. Pass it back to `settle` exactly once (extra calls are
    no-ops)."""

    day: str
    router_key: str | None
    reserved: int
    items: tuple[str, ...]  # store keys that may hold it (empty: nothing to settle)
    expires_at: float  # the budget items' expiry
    hold: str = ""  # the hold field on each item (see the module docstring)
    uncounted: bool = False  # admitted without a full reservation because the store failed
    settled: bool = False
    actual: int | None = None  # what settle charged (reserved when the caller passed None)


@dataclass(frozen=True, slots=True)
class CapReached:
    """The hard cap refused a reservation. Map it to HTTP 429 (see `message`, `retry_after_s`)."""

    scope: Scope
    router_key: str | None
    cap: int
    requested: int
    retry_after_s: int  # until the budget day resets
    fallback_tier: str | None  # `on_cap: tier:<name>`: retry once on this tier, else reject

    @property
    def message(self) -> str:
        who = "this router's" if self.scope == "global" else f"router key {self.router_key!r}'s"
        hours, rest = divmod(self.retry_after_s, 3600)
        return (
            f"The request would exceed {who} daily budget of ${usd(self.cap, 2)} "
            f"(it may cost up to ${usd(self.requested)}). The budget resets in {hours}h{rest // 60:02d}m."
        )


@dataclass(slots=True)
class _Scope:
    kind: Scope
    item: str
    cap: int
    label: str = field(default="")


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
        key_prefix: str = "budget:",
    ) -> None:
        """`tiers`: the rules file's tier names; downgrade entries naming others are dropped."""
        self.store = store
        self.config = config
        self._clock = clock
        self._prefix = key_prefix
        downgrade = (config.pacing.downgrade or {}) if config.pacing.enabled else {}
        self.downgrade = {
            src: dst for src, dst in downgrade.items() if tiers is None or (src in tiers and dst in tiers)
        }
        self._global_cap = config.daily_micro()
        self._spent: Snapshot[int] = Snapshot(
            self._fetch_spent, ttl_s=cache_ttl_s, clock=clock, max_entries=_SEEN_MAX
        )
        self._tasks: set[asyncio.Future[Any]] = set()  # strong references to background writes
        self._outage = Outage(logger, "budget")
        self.holds = Holds(store, self._outage, ttl_s=config.reservation_ttl_s)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # --- items ------------------------------------------------------------------------

    def _scopes(self, day: str, router_key: str | None) -> list[_Scope]:
        """Key scope first: per-key caps refuse more often, and refusing there spares the
        hot global item a write and a rollback."""
        scopes = []
        key_cap = self.config.key_daily_micro(router_key)
        if key_cap is not None and router_key is not None:
            item = f"{self._prefix}{day}:key:{quote(router_key, safe='')}"
            scopes.append(_Scope("key", item, key_cap, f"router key {router_key!a}: "))
        if self._global_cap is not None:
            scopes.append(_Scope("global", f"{self._prefix}{day}", self._global_cap))
        return scopes

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
        scopes = self._scopes(day_key(now, self.config.day_start_hour), router_key)
        if not scopes:
            return unchanged
        spent = await self._spent.read([s.item for s in scopes], now)
        pacing = self.config.pacing
        fraction = max(elapsed_fraction(now, self.config.day_start_hour), pacing.min_day_fraction)
        threshold = 1 + pacing.slack * (1 if priority == "low" else 2)
        ahead: tuple[float, _Scope, int] | None = None
        for scope in scopes:
            allowance = scope.cap * fraction
            used = spent.get(scope.item, 0)
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

    async def _fetch_spent(self, items: list[str], now: float) -> dict[str, int]:
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
        spent = {k: values.get(k, {}).get("spent", 0) for k in items}
        return {k: v if isinstance(v, int) else 0 for k, v in spent.items()}

    # --- the hard cap -----------------------------------------------------------------

    async def reserve(
        self, router_key: str | None, worst_micro: int, *, holder: str = "-"
    ) -> Reservation | CapReached:
        """Hold `worst_micro` against every cap that applies, as a hold named after `holder`
        (the request id). Safe under cancellation: a reservation the caller never received is
        released."""
        if isinstance(worst_micro, bool) or not isinstance(worst_micro, int) or worst_micro < 0:
            raise ValueError(f"worst_micro must be a non-negative int, got {worst_micro!r}")
        task = self._spawn(self._reserve(router_key, worst_micro, holder))
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

    async def _reserve(self, router_key: str | None, worst: int, holder: str) -> Reservation | CapReached:
        now = self._clock()
        day = day_key(now, self.config.day_start_hour)
        expires = self._expiry(day)
        if worst == 0:  # nothing to hold (and a zero add is not portable, see `holds.nonzero`)
            return Reservation(day, router_key, 0, (), expires)
        hold = self.holds.name(holder, now)
        scopes = self._scopes(day, router_key)
        done: list[str] = []
        try:
            for scope in scopes:
                new = await self.holds.take(scope.item, hold, worst, scope.cap, expires)
                if new is None:
                    self._spawn(self.holds.reclaim(scope.item, now))  # tidy up expired holds
                    await self._rollback(done, hold, worst, expires, confirmed=True)
                    retry = math.ceil(day_end(day, self.config.day_start_hour) - now)
                    return CapReached(
                        scope.kind, router_key, scope.cap, worst, max(retry, 1), self.config.cap_tier
                    )
                done.append(scope.item)
        except StoreError as exc:
            self._outage.failed("reserve", exc)
            # The failed write may still land (a timeout is not a refusal): every scope may
            # hold the reservation now or later. Either way the hold is found by id: released
            # by the settle or the rollback below if it landed first, reclaimed when it expires
            # if it lands after them.
            items = tuple(s.item for s in scopes)
            for item in items:  # e.g. an item too big to write: free what expired (background)
                self._spawn(self.holds.reclaim(item, now))
            if self.config.on_store_error == "reject":
                self._spawn(self._rollback(list(items), hold, worst, expires, confirmed=False))
                raise
            # Fail open: serve; the settle will charge the actual cost on every scope.
            return Reservation(day, router_key, worst, items, expires, hold, uncounted=True)
        self._outage.ok()
        return Reservation(day, router_key, worst, tuple(done), expires, hold)

    async def _rollback(
        self, items: list[str], hold: str, worst: int, expires: float, *, confirmed: bool
    ) -> None:
        """Undo a reservation on `items`. Never raises: a hold left behind expires (charged)."""
        for item in items:
            try:
                await self.holds.settle(item, hold, worst, 0, expires, confirmed=confirmed)
            except StoreError as exc:
                logger.warning("budget rollback of $%s on %s failed: %s", usd(worst), item, exc)

    async def settle(self, reservation: Reservation, actual_micro: int | None) -> None:
        """Replace the reservation by the actual cost: 0 for a request that failed before a
        provider charged it, None when the cost is unknown (the reservation is charged).

        Exactly once: later calls do nothing. Never raises StoreError (a `finally` path);
        the write finishes even if the caller is cancelled meanwhile.
        """
        if reservation.settled:
            return
        actual = reservation.reserved if actual_micro is None else actual_micro
        if isinstance(actual, bool) or not isinstance(actual, int) or actual < 0:
            raise ValueError(f"actual_micro must be a non-negative int or None, got {actual_micro!r}")
        reservation.settled = True
        reservation.actual = actual
        if not reservation.items:
            return
        await asyncio.shield(self._spawn(self._apply(reservation, actual)))

    async def _apply(self, reservation: Reservation, actual: int) -> None:
        r = reservation
        for item in r.items:
            try:
                new = await self.holds.settle(
                    item, r.hold, r.reserved, actual, r.expires_at, confirmed=not r.uncounted
                )
            except StoreError as exc:
                self._outage.failed("settle", exc)
                logger.warning(
                    "budget settle on %s failed (%s): the hold stays and is charged in full at"
                    " expiry, $%s where $%s was spent",
                    item,
                    exc,
                    usd(r.reserved),
                    usd(actual),
                )
                continue
            if new is not None and "spent" in new:  # our add returned everyone's fresh total
                self._spent.set(item, new["spent"])

    # --- status and housekeeping ------------------------------------------------------

    async def status(self, router_keys: Sequence[str] = ()) -> dict[str, Any]:
        """Today's caps, commitments and pace, for the status endpoint (one store read)."""
        now = self._clock()
        day = day_key(now, self.config.day_start_hour)
        named: list[tuple[str | None, _Scope]] = [(None, s) for s in self._scopes(day, None)]
        for key in dict.fromkeys(router_keys):
            named += [(key, s) for s in self._scopes(day, key) if s.kind == "key"]
        items = await self.store.get_many([s.item for _, s in named]) if named else {}
        stale = [item for item, value in items.items() if self.holds.due(value, now)]
        if stale:  # report what counts: reclaim expired holds first, then read again
            await asyncio.gather(*(self.holds.reclaim(item, now, force=True) for item in stale))
            items = await self.store.get_many([s.item for _, s in named])
        fraction = max(elapsed_fraction(now, self.config.day_start_hour), self.config.pacing.min_day_fraction)
        out: dict[str, Any] = {"day": day, "global": None, "keys": {}}
        for key, scope in named:
            item = items.get(scope.item, {})
            committed, spent = item.get("committed", 0), item.get("spent", 0)
            holds = held_amounts(item)
            entry = {
                "cap_usd": usd(scope.cap),
                "committed_usd": usd(_int(committed)),
                "spent_usd": usd(_int(spent)),
                "pace_usd": usd(math.floor(scope.cap * fraction)),
                "in_flight": len(holds),
                "held_usd": usd(sum(holds)),
                "unsettled_usd": usd(_int(item.get("unsettled"))),
            }
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


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
