"""Circuit breakers shared through the store, so every copy of the function sees them.

One breaker per key (the caller uses keys like `provider:openai` or `model:gpt-4o`):

    closed --(failure_threshold failures within the last window_s)--> open
    open   --(the recovery period elapsed)--> half-open: exactly ONE probe request at a time
    probe succeeds --> closed;  probe fails --> open again, for a longer recovery period

Failures are counted over a ROLLING window of `window_s` seconds, not a clock-aligned one (where
failures either side of an edge never add up): the classic sliding-window counter. Failures go
into buckets of `window_s` seconds; the count at time t is the current bucket's plus the previous
bucket's weighted by how much of it still lies within the last `window_s` seconds.

Recovery adapts: the first recovery period is `recovery_s` (short: a provider that comes back
gets traffic again within seconds); each failed probe multiplies it by `recovery_backoff`, up
to `recovery_max_s` (a provider that stays down is not probed every few seconds); a successful
probe closes the breaker, and its next opening starts short again (`BreakerConfig.recovery_for`).

Store layout (prefix `breaker:` by default; values are small dicts of ints/strs):
- `breaker:<key>`            {"state": "open", "opened_ms", "last_failure_ms", "failed_probes"};
                             absent = closed. `failed_probes`: probes failed since it opened
- `breaker:<key>@<bucket#>`  {"failures": n} — an atomic counter per bucket of `window_s`
                             seconds; two are read (this one and the previous), expiring after
- `breaker:<key>!probe`      {"owner": token}: the half-open probe lease, taken with a
                             conditional write and expiring after the lease the caller
                             asks for (at least `probe_lease_s`; the plan asks for the
                             attempt's longest timeout), so a probe that crashed cannot
                             wedge the breaker and a slow one is not joined by a second

Hot-path cost: `snapshot()` reads every candidate's breaker (its state item and its two
buckets) with ONE `get_many` and keeps
the result in process for `cache_ttl_s` (1 s by default; a `tier_router.snapshot.Snapshot`),
so a warm process under load does not touch the store per request. Writes happen only on
failures and on state changes; a success on a closed breaker writes nothing. (A success
therefore does not reset the failure count: we count failures per rolling window, not
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


MAX_BACKOFF_STEPS = 64
"""`recovery_for` stops multiplying after this many failed probes (the cap is reached long
before; this keeps `backoff ** n` a finite float however long a provider stays down)."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5  # failures within the last window_s that open the breaker
    window_s: float = 30.0  # length of the rolling failure-counting window
    recovery_s: float = 5.0  # how long a newly opened breaker blocks before one probe is let through
    recovery_backoff: float = 2.0  # each failed probe multiplies the recovery period by this...
    recovery_max_s: float = 60.0  # ...up to this
    probe_lease_s: float = 30.0  # a probe that neither succeeds nor fails frees its slot after this
    cache_ttl_s: float = 1.0  # how stale a snapshot may be (0 = read the store every time)
    key_prefix: str = "breaker:"

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or min(self.window_s, self.recovery_s, self.probe_lease_s) <= 0:
            raise ValueError("breaker threshold, window, recovery and lease must be positive")
        if self.recovery_backoff < 1 or self.recovery_max_s < self.recovery_s:
            raise ValueError("breaker recovery_backoff must be >= 1 and recovery_max_s >= recovery_s")

    def recovery_for(self, failed_probes: int) -> float:
        """The recovery period of a breaker whose probes failed `failed_probes` times since it
        opened: recovery_s x recovery_backoff^failed_probes, at most recovery_max_s."""
        steps = min(max(failed_probes, 0), MAX_BACKOFF_STEPS)
        return min(self.recovery_max_s, self.recovery_s * self.recovery_backoff**steps)


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A breaker as of a snapshot. Times are unix epoch seconds."""

    state: State = "closed"
    opened_at: float | None = None
    failures: float = 0  # within the rolling window (an estimate); counted only while closed
    last_failure_at: float | None = None  # tracked for open breakers (what re-opened them)
    failed_probes: int = 0  # probes failed since it opened: sets its recovery period


CLOSED = BreakerView()


@dataclass(frozen=True, slots=True)
class _Known:
    """What the store said about one breaker (or what we wrote to it)."""

    bucket: int  # the bucket `failures` counts in; `previous` is bucket - 1's count
    failures: int
    previous: int
    item: Value | None  # the state item; None = closed

    def counts_at(self, bucket: int) -> tuple[int, int]:
        """(this bucket's, the previous bucket's) failures as known, seen from `bucket`."""
        if bucket == self.bucket:
            return self.failures, self.previous
        if bucket == self.bucket + 1:
            return 0, self.failures
        return 0, 0


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
        bucket = self._bucket(now)
        names = [
            name
            for k in keys
            for name in (self._state_key(k), self._count_key(k, bucket), self._count_key(k, bucket - 1))
        ]
        try:
            items = await self.store.get_many(names)
        except StoreError as exc:
            self._outage.failed("read", exc)
            items = {}  # fail open: everything reads as closed until the next refresh
        else:
            self._outage.ok()
        return {
            k: _Known(
                bucket,
                _count((items.get(self._count_key(k, bucket)) or {}).get("failures")),
                _count((items.get(self._count_key(k, bucket - 1)) or {}).get("failures")),
                items.get(self._state_key(k)),
            )
            for k in keys
        }

    def _view(self, key: str, now: float) -> BreakerView:
        known = self._known.get(key)
        if known is None:
            return CLOSED
        item = known.item
        failures = self._rolling(*known.counts_at(self._bucket(now)), now)
        if item is None or item.get("state") != "open":
            return BreakerView(failures=failures)
        opened_at = _seconds(item.get("opened_ms"))
        failed_probes = _count(item.get("failed_probes"))
        state: State = "open"
        if opened_at is None or now >= opened_at + self.config.recovery_for(failed_probes):
            state = "half_open"
        return BreakerView(state, opened_at, failures, _seconds(item.get("last_failure_ms")), failed_probes)

    def _rolling(self, failures: int, previous: int, now: float) -> float:
        """The sliding-window estimate: this bucket's failures plus the previous bucket's,
        weighted by the share of it that lies within the last `window_s` seconds."""
        if not previous:
            return failures
        window_s = self.config.window_s
        elapsed = (now - self._bucket(now) * window_s) / window_s  # share of this bucket gone by
        return failures + previous * (1.0 - elapsed)

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
        if view.opened_at is not None and now < view.opened_at + self.config.recovery_for(view.failed_probes):
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
            else:  # a probe (or a last-resort attempt) failed: a new, longer recovery period
                failed = view.failed_probes + 1
                item: Value = {
                    "state": "open",
                    "opened_ms": ms,
                    "last_failure_ms": ms,
                    "failed_probes": failed,
                }
                await self.store.put(self._state_key(key), item)
                self._remember(key, now, item=item)
                recovery_s = self.config.recovery_for(failed)
                # Stores keep whole-second expiries (rounded up): end the hold a second early so
                # it is surely gone when the new recovery period ends.
                await self._hold_probe_until(key, now + recovery_s - 1)
                logger.warning("breaker %s re-opened for %gs: probe failed", key, recovery_s)
                self._notify(key, "reopened")
        except StoreError as exc:
            self._outage.failed("record failure", exc)

    async def _count_failure(self, key: str, now: float, ms: int) -> None:
        bucket = self._bucket(now)
        counts = await self.store.add(
            self._count_key(key, bucket),
            {"failures": 1},
            expires_at=(bucket + 3) * self.config.window_s,  # counted in the next bucket too, then gone
        )
        failures = counts["failures"] if counts else 0
        known = self._known.get(key)
        previous = known.counts_at(bucket)[1] if known is not None else 0  # as of the last read
        self._remember(key, now, bucket=bucket, failures=failures, previous=previous)
        rolling = self._rolling(failures, previous, now)
        if rolling < self.config.failure_threshold:
            return
        item: Value = {"state": "open", "opened_ms": ms, "last_failure_ms": ms, "failed_probes": 0}
        if await self.store.put_if(self._state_key(key), item, expected={"state": None}):
            self._remember(key, now, item=item)
            logger.warning("breaker %s opened: %.1f failures within %gs", key, rolling, self.config.window_s)
            self._notify(key, "opened")
        else:
            self._known.discard(key)  # someone else opened it first: re-read next time

    async def record_success(self, key: str, view: BreakerView) -> None:
        """Close a breaker that was open or half-open. A closed one costs nothing."""
        if view.state == "closed":
            return
        now = self._clock()
        bucket = self._bucket(now)
        try:
            await self.store.delete(self._state_key(key))
            for stale in (bucket, bucket - 1):  # the failures that opened it count no more
                await self.store.delete(self._count_key(key, stale))
            await self._release_probe(key, now)
        except StoreError as exc:
            self._outage.failed("record success", exc)
            return
        self._known.set(key, _Known(bucket, 0, 0, None), now)
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
        known = self._known.get(key) or _Known(self._bucket(now), 0, 0, None)
        self._known.amend(key, replace(known, **changes), now)

    def _bucket(self, now: float) -> int:
        return math.floor(now / self.config.window_s)

    def _state_key(self, key: str) -> str:
        return f"{self.config.key_prefix}{key}"

    def _count_key(self, key: str, bucket: int) -> str:
        return f"{self.config.key_prefix}{key}@{bucket}"

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


def _count(value: object) -> int:
    """A counter read from the store (absent, not an int, or negative: 0)."""
    return value if isinstance(value, int) and value > 0 else 0
