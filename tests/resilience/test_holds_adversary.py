"""Adversary against budget holds (issue 13, item 2): a store that loses, delays, duplicates or
half-answers the writes around a reservation, two processes racing on one SQLite file, a
caller cancelled at every await. Three promises:

(a) spend never passes the cap (honest providers) except by requests still running after
    `reservation_ttl_s`;
(b) whatever the store does, `committed` returns to settled spend + live holds within
    `reservation_ttl_s` + the next reclaim;
(c) each reservation counts once (no double release, no double charge).

Tests named `..._breaks_today` FAIL on the code they were written against (left failing on
purpose, not xfail): each names the promise it breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.holds import HOLD_PREFIX
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio

DAY = "2026-11-23"
GLOBAL = f"budget:{DAY}"
KEY_ITEM = f"budget:{DAY}:key:team-a"
TTL = 60
CAP_USD = 1.0
WORST, ACTUAL = 900_000, 800_000  # each request reserves $0.90 of the $1 cap and costs $0.80


def guard_on(store: Any, clock: FakeClock, **config: Any) -> BudgetGuard:
    config = {"daily_usd": CAP_USD, "reservation_ttl_s": TTL, **config}
    return BudgetGuard(store, BudgetConfig(**config), clock=clock)


async def counters(store: Store, item: str = GLOBAL) -> tuple[int, int, int]:
    """(committed, spent, number of holds) on `item`."""
    value = await store.get(item) or {}
    holds = sum(1 for name in value if name.startswith(HOLD_PREFIX))
    return int(value.get("committed", 0)), int(value.get("spent", 0)), holds


def is_settle(options: Mapping[str, Any], deltas: Mapping[str, int]) -> bool:
    return options.get("release") is not None and "spent" in deltas


def is_reclaim(options: Mapping[str, Any], deltas: Mapping[str, int]) -> bool:
    return options.get("release") is not None and "spent" not in deltas and "expires_at" not in options


class Misbehaving(Wrapped):
    """Adds matching `which(options, deltas)` misbehave `times` times: `lost` raises a timeout
    without applying the write (DynamoDB never received it; SQLite's lock outlasted
    busy_timeout); `ambiguous` applies it and then raises the timeout (DynamoDB applied it and
    the response was lost: "outcome unknown")."""

    def __init__(
        self, inner: Store, which: Callable[[Mapping[str, Any], Mapping[str, int]], bool], how: str, times: int
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


async def until(check: Callable[[], Any], timeout_s: float = 2.0) -> bool:
    """Poll `check` (async) until it returns true, at most `timeout_s` of real time."""
    with anyio.move_on_after(timeout_s):
        while not await check():
            await asyncio.sleep(0.01)
        return True
    return False


# --- (a) a settle write that never lands ---------------------------------------------------


async def test_a_lost_settle_write_lets_spend_pass_the_cap_breaks_today(store: Store, clock: FakeClock) -> None:
    """BREAKS (a). One settle write per request is lost (timed out, never applied); the store
    works again right after. The hold it should have released expires and is reclaimed,
    and the request's actual cost is never counted anywhere: each TTL the router admits
    another $0.80 request against the $1 cap. Before holds, a lost settle left the
    reservation counted for the day (over-counting, the safe direction the docs promise:
    "never under-counting"). Suggested fix: retry the settle's release (it is idempotent:
    `add(release=hold)` applies once) in the background until it lands or the hold expires;
    only a definite "no hold" (None) may fall back to charging `actual` alone."""
    clock.now = at(2026, 11, 23, 12)
    flaky = Misbehaving(store, is_settle, "lost", times=0)
    guard = guard_on(flaky, clock, on_store_error="reject")
    admitted = 0
    for i in range(4):
        flaky.left, flaky.hits = 1, 0
        held = await guard.reserve(None, WORST, holder=f"req-{i}")
        if isinstance(held, CapReached):
            break
        admitted += 1
        await guard.settle(held, ACTUAL)  # the write is lost; the request's money was spent
        assert flaky.hits == 1
        await until(lambda: _spent_at_least(store, admitted * ACTUAL), 0.3)  # a retry may land it
        clock.advance(TTL + 1)
        await guard.status()  # reclaims what expired
    committed, spent, holds = await counters(store)
    assert admitted * ACTUAL <= CAP_USD * 1_000_000, (
        f"admitted {admitted} requests costing ${admitted * ACTUAL / 1e6:.2f} under a ${CAP_USD:.2f} cap; "
        f"the store counts committed ${committed / 1e6:.2f}, spent ${spent / 1e6:.2f}"
    )
    assert (committed, spent, holds) == (ACTUAL, ACTUAL, 0)


async def _spent_at_least(store: Store, micro: int) -> bool:
    return (await counters(store))[1] >= micro


# --- (c) writes that land but report a timeout ---------------------------------------------


async def test_a_settle_that_lands_but_reports_a_timeout_counts_once(store: Store, clock: FakeClock) -> None:
    """DynamoDB applied the settle and the answer was lost. Counted once, then and after the
    TTL (a fix that retries settles must not charge the cost a second time)."""
    clock.now = at(2026, 11, 23, 12)
    flaky = Misbehaving(store, is_settle, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    await guard.settle(held, ACTUAL)
    assert flaky.hits == 1
    await asyncio.sleep(0.3)  # whatever the guard does in the background
    assert await counters(store) == (ACTUAL, ACTUAL, 0)
    clock.advance(TTL + 1)
    await guard.status()
    await asyncio.sleep(0.1)
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


async def test_a_late_reservation_plus_an_ambiguous_settle_counts_once(store: Store, clock: FakeClock) -> None:
    """The reservation write lands but reports a timeout (fail open: served, `uncounted`),
    and so does its settle. The settle's release found the hold: charged once."""
    clock.now = at(2026, 11, 23, 12)
    claims = Misbehaving(store, lambda o, d: o.get("claim") is not None, "ambiguous", times=1)
    flaky = Misbehaving(claims, is_settle, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    assert held.uncounted
    await guard.settle(held, ACTUAL)
    await asyncio.sleep(0.3)
    clock.advance(TTL + 1)
    await guard.status()
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


async def test_a_reclaim_that_lands_but_reports_a_timeout_breaks_today(store: Store, clock: FakeClock) -> None:
    """BREAKS availability, not money: a process died holding $0.90; after the TTL, the next
    $0.90 request is refused, its reclaim releases the expired hold (the write lands) but
    the answer is lost, so the guard counts $0 freed, does not retry, and answers 429 while
    the cap has room. Suggested fix: retry the reservation after a reclaim that attempted
    any release (a refused retry costs one conditional write), not only after one that
    confirmed freeing something."""
    clock.now = at(2026, 11, 23, 12)
    dead = guard_on(store, clock)
    assert isinstance(await dead.reserve(None, WORST, holder="dies"), Reservation)
    clock.advance(TTL + 1)
    flaky = Misbehaving(store, is_reclaim, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    again = await guard.reserve(None, WORST, holder="next")
    assert flaky.hits == 1
    assert await counters(store) in ((0, 0, 0), (WORST, 0, 1))  # the release did land (c)
    assert isinstance(again, Reservation), f"refused with the cap free: {again}"


# --- (c) settle racing reclaim on one SQLite file from two processes -----------------------


async def test_settle_racing_a_reclaim_from_another_process_counts_once(tmp_path: Path) -> None:
    """Two stores on one SQLite file (two connections, two worker threads: as two router
    processes). A request settles exactly when another process reclaims its expired hold
    (a request that ran past the TTL): whichever wins, the cost is counted once and the
    hold is gone. 30 rounds, both orders race for the write lock."""
    clock = FakeClock(at(2026, 11, 23, 12))
    a = SQLiteStore(tmp_path / "state.db", clock=clock, deadline_s=5)
    b = SQLiteStore(tmp_path / "state.db", clock=clock, deadline_s=5)
    try:
        ga = BudgetGuard(a, BudgetConfig(daily_usd=1000.0, reservation_ttl_s=TTL), clock=clock)
        gb = BudgetGuard(b, BudgetConfig(daily_usd=1000.0, reservation_ttl_s=TTL), clock=clock)
        for i in range(30):
            held = await ga.reserve(None, WORST, holder=f"req-{i}")
            assert isinstance(held, Reservation)
            clock.advance(TTL + 1)
            await asyncio.gather(ga.settle(held, ACTUAL), gb.holds.reclaim(GLOBAL, clock(), force=True))
            committed, spent, holds = await counters(a)
            assert (committed, spent, holds) == ((i + 1) * ACTUAL, (i + 1) * ACTUAL, 0), f"round {i}"
    finally:
        await a.aclose()
        await b.aclose()


# --- cancellation at every await -------------------------------------------------------------


class Yielding(Wrapped):
    """Every call yields to the loop a few times first: points where a caller can be cancelled."""

    async def before(self, name: str) -> None:
        for _ in range(3):
            await asyncio.sleep(0)


@pytest.mark.parametrize("where", ["reserve", "settle"])
async def test_cancelled_at_every_await_counts_once(clock: FakeClock, where: str) -> None:
    """Per-key and global scopes; the caller is cancelled after k loop iterations, for every
    k until nothing is left to interrupt. Afterwards: nothing held, spend counted once."""
    clock.now = at(2026, 11, 23, 12)
    for k in range(1 if where == "settle" else 0, 40):  # k=0: a settle task that never started
        inner = MemoryStore(clock=clock)
        guard = guard_on(Yielding(inner), clock, per_key_daily_usd=CAP_USD)
        held: Reservation | None = None
        if where == "reserve":
            task = asyncio.ensure_future(guard.reserve("team-a", WORST, holder="req"))
        else:
            outcome = await guard.reserve("team-a", WORST, holder="req")
            assert isinstance(outcome, Reservation)
            held = outcome
            task = asyncio.ensure_future(guard.settle(held, ACTUAL))
        for _ in range(k):
            await asyncio.sleep(0)
        done = task.done()
        task.cancel()
        for _ in range(200):  # let shielded and background writes finish
            await asyncio.sleep(0)
        if where == "reserve" and done and isinstance(task.result(), Reservation):
            await guard.settle(task.result(), ACTUAL)
            expected = ACTUAL
        else:
            expected = ACTUAL if where == "settle" else 0
        for item in (GLOBAL, KEY_ITEM):
            assert await counters(inner, item) == (expected, expected, 0), f"k={k} {item}"
        if done:
            break
    else:
        pytest.fail("the task never finished within 40 loop iterations")


# --- per-key + global: one scope's write lands late ----------------------------------------


class LateOn(Wrapped):
    """Claims on `item` time out at the caller and are applied later, by `land()`."""

    def __init__(self, inner: Store, item: str) -> None:
        super().__init__(inner)
        self.item = item
        self.parked: list[tuple[str, dict[str, int], dict[str, Any]]] = []

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        if key == self.item and options.get("claim") is not None:
            self.parked.append((key, dict(deltas), options))
            raise StoreUnavailable("store add took longer than 1s")
        return await super().add(key, deltas, **options)

    async def land(self) -> list[dict[str, int] | None]:
        out = [await self.inner.add(key, deltas, **options) for key, deltas, options in self.parked]
        self.parked.clear()
        return out


@pytest.mark.parametrize("mode", ["allow", "reject"])
@pytest.mark.parametrize("late_item", [GLOBAL, KEY_ITEM], ids=["global-late", "key-late"])
async def test_one_scope_written_late_counts_once_on_both(
    store: Store, clock: FakeClock, mode: str, late_item: str
) -> None:
    """A per-key cap and the global cap. One scope's reservation write lands after the
    deadline, after the request settled (allow) or was rolled back (reject). After the TTL
    both items hold settled spend only, and the key can spend its cap again."""
    clock.now = at(2026, 11, 23, 12)
    worst, actual = 300_000, 200_000  # so the late write still fits under the key's cap
    late = LateOn(store, late_item)
    guard = guard_on(late, clock, per_key_daily_usd=CAP_USD, daily_usd=3.0, on_store_error=mode)
    if mode == "allow":
        held = await guard.reserve("team-a", worst, holder="req-1")
        assert isinstance(held, Reservation)
        assert held.uncounted
        await guard.settle(held, actual)
        charged = actual
    else:
        with pytest.raises(StoreUnavailable):
            await guard.reserve("team-a", worst, holder="req-1")
        await asyncio.sleep(0.05)  # the rollback runs in the background
        charged = 0
    assert await late.land() != [None]  # lands after its settle / rollback: nobody will release it
    assert (await counters(store, late_item)) == (charged + worst, charged, 1)
    clock.advance(TTL + 1)
    await guard.status(["team-a"])
    assert await counters(store, KEY_ITEM) == (charged, charged, 0)
    assert await counters(store, GLOBAL) == (charged, charged, 0)
    rest = CAP_USD * 1_000_000 - charged
    again = await guard_on(store, clock, per_key_daily_usd=CAP_USD, daily_usd=3.0).reserve(
        "team-a", int(rest), holder="req-2"
    )
    assert isinstance(again, Reservation)  # the key's whole remaining budget is usable


async def test_global_refuses_and_the_key_rollback_is_lost(store: Store, clock: FakeClock) -> None:
    """The key scope admits, the global scope refuses (another key spent it), and the rollback
    of the key's hold is lost. The key over-counts (safe) until the TTL, then it is free."""
    clock.now = at(2026, 11, 23, 12)
    other = guard_on(store, clock, per_key_daily_usd=CAP_USD)
    spent = await other.reserve("team-b", 500_000, holder="b")
    assert isinstance(spent, Reservation)
    await other.settle(spent, 500_000)
    flaky = Misbehaving(store, lambda o, d: o.get("release") is not None, "lost", times=1)
    guard = guard_on(flaky, clock, per_key_daily_usd=CAP_USD)
    refused = await guard.reserve("team-a", WORST, holder="a")
    assert isinstance(refused, CapReached)
    assert refused.scope == "global"
    assert flaky.hits == 1
    assert await counters(store, KEY_ITEM) == (WORST, 0, 1)  # over-counted: the safe direction
    clock.advance(TTL + 1)
    await guard.status(["team-a"])
    assert await counters(store, KEY_ITEM) == (0, 0, 0)
    assert await counters(store, GLOBAL) == (500_000, 500_000, 0)
