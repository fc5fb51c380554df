"""Circuit breakers shared through the store, so every copy of the function sees them.

One breaker per key (the caller uses keys like `provider:openai` or `model:gpt-4o`):

    closed --(failure_threshold failures in a window)--> open
    open   --(recovery_s elapsed)--> half-open: exactly ONE probe request at a time
    probe succeeds --> closed;  probe fails --> open again (a new recovery period)

Store layout (prefix `breaker:` by default; values are small dicts of ints/strs):
- `breaker:<key>`            {"state": "open", "opened_ms", "last_failure_ms"}; absent = closed
- `breaker:<key>@<window#>`  {"failures": n} — an atomic counter per fixed window of
                             `window_s` seconds (aligned to multiples of it), expiring after
- `breaker:<key>!probe`      {"owner": token}: the half-open probe lease, taken with a
                             conditional write and expiring after the lease the caller
                             asks for (at least `probe_lease_s`; the plan asks for the
                             attempt's longest timeout), so a probe that crashed cannot
                             wedge the breaker and a slow one is not joined by a second

Hot-path cost: `snapshot()` reads every candidate's breaker with ONE `get_many` and keeps
the result in process for `cache_ttl_s` (1 s by default; a `tier_router.snapshot.Snapshot`),
so a warm process under load does not touch the store per request. Writes happen only on
failures and on state changes; a success on a closed breaker writes nothing. (A success
therefore does not reset the window's failure count: we count failures per window, not
consecutive failures, so a provider failing every other request still trips.)

When the store itself fails, breakers fail OPEN in the traffic sense: they read as closed
and nothing is blocked — a broken state store must not take the gateway down with it.
That is logged once per outage, not per request.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tier_router.outage import Outage
from tier_router.snapshot import Snapshot
from tier_router.store.base import Store, StoreError, Value

logger = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5  # failures within one window that open the breaker
    window_s: float = 30.0  # length of a failure-counting window
    recovery_s: float = 30.0  # how long an open breaker blocks before one probe is let through
    probe_lease_s: float = 30.0  # a probe that neither succeeds nor fails frees its slot after this
    cache_ttl_s: float = 1.0  # how stale a snapshot may be (0 = read the store every time)
    key_prefix: str = "breaker:"

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or min(self.window_s, self.recovery_s, self.probe_lease_s) <= 0:
            raise ValueError("breaker threshold, window, recovery and lease must be positive")


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker as of a snapshot. Times are unix epoch seconds."""

    state: State = "closed"
    opened_at: float | None = None
    failures: int = 0  # in the current window; counted only while closed
    last_failure_at: float | None = None  # tracked for open breakers (what re-opened them)


CLOSED = BreakerView()


@dataclass(frozen=True, slots=True)
class _Known:
    """What the store said about one breaker (or what we wrote to it)."""

    window: int  # the failure window `failures` counts in
    failures: int
    item: Value | None  # the state item; None = closed


class BreakerBoard:
    """Every breaker, as one process sees them. Create one per process and share it."""

    def __init__(
        self,
        store: Store,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config or BreakerConfig()
        self._clock = clock
        self._known: Snapshot[_Known] = Snapshot(self._fetch, ttl_s=self.config.cache_ttl_s, clock=clock)
        self._leases: dict[str, str] = {}  # breaker key -> our probe-lease token
        self._tokens = (f"{uuid.uuid4().hex[:12]}:{n}" for n in itertools.count())
        self._outage = Outage(logger, "breaker", "treating breakers as closed")
        self.on_open: Callable[[str, str], None] | None = None
        """Called with (key, "opened" | "reopened") when this process opens a breaker (metrics)."""

    # --- reading ----------------------------------------------------------------------

    async def snapshot(self, keys: Sequence[str]) -> dict[str, BreakerView]:
        """Views of the given breakers: at most ONE store round trip, usually none (cache)."""
        await self._known.read(keys)
        now = self._clock()
        return {k: self._view(k, now) for k in keys}

    async def _fetch(self, keys: list[str], now: float) -> dict[str, _Known]:
        window = self._window(now)
        names = [name for k in keys for name in (self._state_key(k), self._count_key(k, window))]
        try:
            items = await self.store.get_many(names)
        except StoreError as exc:
            self._outage.failed("read", exc)
            items = {}  # fail open: everything reads as closed until the next refresh
        else:
            self._outage.ok()
        known = {}
        for k in keys:
            failures = (items.get(self._count_key(k, window)) or {}).get("failures", 0)
            failures = failures if isinstance(failures, int) else 0
            known[k] = _Known(window, failures, items.get(self._state_key(k)))
        return known

    def _view(self, key: str, now: float) -> BreakerView:
        known = self._known.get(key)
        if known is None:
            return CLOSED
        item = known.item
        failures = known.failures if known.window == self._window(now) else 0
        if item is None or item.get("state") != "open":
            return BreakerView(failures=failures)
        opened_at = _seconds(item.get("opened_ms"))
        state: State = "open"
        if opened_at is None or now >= opened_at + self.config.recovery_s:
            state = "half_open"
        return BreakerView(state, opened_at, failures, _seconds(item.get("last_failure_ms")))

    # --- deciding ---------------------------------------------------------------------

    async def admit(self, key: str, view: BreakerView, lease_s: float | None = None) -> bool:
        """May a request go to `key` now? Closed: yes. Open: no, until recovery has
        elapsed; then yes for exactly one caller at a time (the probe-lease winner).

        `lease_s`: how long the probe lease is held, at least `probe_lease_s`. The caller passes
        the longest its request may take (see `plan.probe_lease_s`): a lease that expired while
        its probe was still in flight would let a second probe in."""
        if view.state == "closed":
            return True
        now = self._clock()
        if view.opened_at is not None and now < view.opened_at + self.config.recovery_s:
            return False
        token = next(self._tokens)
        try:
            won = await self.store.put_if(
                self._probe_key(key),
                {"owner": token},
                expected={"owner": None},
                expires_at=now + max(self.config.probe_lease_s, lease_s or 0.0),
            )
        except StoreError as exc:
            self._outage.failed("probe lease", exc)
            return True
        if won:
            self._leases[key] = token
            logger.info("breaker %s half-open: probing", key)
        return won

    # --- recording outcomes -----------------------------------------------------------

    async def record_failure(self, key: str, view: BreakerView) -> None:
        """Count a failure; open the breaker at the threshold; re-open it after a failed probe."""
        now = self._clock()
        ms = int(now * 1000)
        try:
            if view.state == "closed":
                await self._count_failure(key, now, ms)
            else:  # a probe (or a last-resort attempt) failed: a new recovery period starts
                item: Value = {"state": "open", "opened_ms": ms, "last_failure_ms": ms}
                await self.store.put(self._state_key(key), item)
                self._remember(key, now, item=item)
                # Stores keep whole-second expiries (rounded up): end the hold a second early so
                # it is surely gone when the new recovery period ends.
                await self._hold_probe_until(key, now + self.config.recovery_s - 1)
                logger.warning("breaker %s re-opened: probe failed", key)
                self._notify(key, "reopened")
        except StoreError as exc:
            self._outage.failed("record failure", exc)

    async def _count_failure(self, key: str, now: float, ms: int) -> None:
        window = self._window(now)
        counts = await self.store.add(
            self._count_key(key, window),
            {"failures": 1},
            expires_at=(window + 2) * self.config.window_s,  # outlive the window, then vanish
        )
        failures = counts["failures"] if counts else 0
        self._remember(key, now, window=window, failures=failures)
        if failures < self.config.failure_threshold:
            return
        item: Value = {"state": "open", "opened_ms": ms, "last_failure_ms": ms}
        if await self.store.put_if(self._state_key(key), item, expected={"state": None}):
            self._remember(key, now, item=item)
            logger.warning("breaker %s opened: %d failures within %gs", key, failures, self.config.window_s)
            self._notify(key, "opened")
        else:
            self._known.discard(key)  # someone else opened it first: re-read next time

    async def record_success(self, key: str, view: BreakerView) -> None:
        """Close a breaker that was open or half-open. A closed one costs nothing."""
        if view.state == "closed":
            return
        now = self._clock()
        try:
            await self.store.delete(self._state_key(key))
            await self.store.delete(self._count_key(key, self._window(now)))
            await self._release_probe(key, now)
        except StoreError as exc:
            self._outage.failed("record success", exc)
            return
        self._known.set(key, _Known(self._window(now), 0, None), now)
        logger.info("breaker %s closed: probe succeeded", key)

    async def release(self, key: str) -> None:
        """Give back a probe lease that was taken but not used (the request never went out)."""
        try:
            await self._release_probe(key, self._clock())
        except StoreError as exc:
            self._outage.failed("release probe", exc)

    async def _hold_probe_until(self, key: str, until: float) -> None:
        """After a failed probe, keep the lease until the new recovery period ends: another
        process whose cached view still says half-open must not find a free lease and probe
        again at once. Exactly one probe per recovery period, across processes."""
        token = self._leases.pop(key, None)
        lease = self._probe_key(key)
        if token is not None:
            await self.store.put_if(lease, {"owner": token}, expected={"owner": token}, expires_at=until)
        else:  # a last-resort attempt, not a lease holder: take the lease if it is free
            await self.store.put_if(
                lease, {"owner": next(self._tokens)}, expected={"owner": None}, expires_at=until
            )

    async def _release_probe(self, key: str, now: float) -> None:
        """Give the lease back, but only if it is still ours: an already-expired put is a
        conditional delete, so a slow probe cannot free the lease of the one after it."""
        token = self._leases.pop(key, None)
        if token is not None:
            await self.store.put_if(
                self._probe_key(key), {"owner": token}, expected={"owner": token}, expires_at=now - 1
            )

    # --- helpers ----------------------------------------------------------------------

    def _remember(self, key: str, now: float, **changes: Any) -> None:
        """Apply our own write (`changes` to `_Known`'s fields) to the snapshot, so this
        process sees it without a read; the rest of what it knows is as old as it was."""
        known = self._known.get(key) or _Known(self._window(now), 0, None)
        self._known.amend(key, replace(known, **changes), now)

    def _window(self, now: float) -> int:
        return math.floor(now / self.config.window_s)

    def _state_key(self, key: str) -> str:
        return f"{self.config.key_prefix}{key}"

    def _count_key(self, key: str, window: int) -> str:
        return f"{self.config.key_prefix}{key}@{window}"

    def _probe_key(self, key: str) -> str:
        return f"{self.config.key_prefix}{key}!probe"

    def _notify(self, key: str, change: str) -> None:
        if self.on_open is not None:
            self.on_open(key, change)


def last_failure(view: BreakerView) -> float:
    """When the breaker last failed (epoch seconds; 0 when it never did)."""
    return view.last_failure_at or view.opened_at or 0.0


def least_recently_failed(keys: Sequence[str], views: Mapping[str, BreakerView]) -> str:
    """The key whose breaker failed longest ago (ties: the caller's order wins)."""
    return min(keys, key=lambda key: last_failure(views.get(key, CLOSED)))


def _seconds(ms: object) -> float | None:
    return ms / 1000 if isinstance(ms, int) else None
