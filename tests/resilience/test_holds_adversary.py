"""Adversary against budget holds (issue 13, item 2): a store that loses, delays, duplicates or
half-answers the writes around a reservation, a process that dies with many in flight, odd
request ids, a caller cancelled at every await (SQLite shared by processes:
`test_holds_adversary_sqlite.py`). The promises (`spend.holds`' docstring is the spec):

(a) with honest providers, spend never passes the cap. The only exception: `on_store_error:
    allow` requests whose reservation could not be taken at all AND whose settle never
    reached the store either (served, counted nowhere);
(b) once every write has landed and every hold has expired, `committed` == `spent` (+ live
    holds): an expired hold is charged in full (its reservation bounds its cost), never freed;
(c) each reservation counts once (no double release, no double charge), whatever order a
    late write, its settle, their retries and an expiry land in.

These tests were written against the first version of holds, where an expired hold was freed
and a settle whose write timed out was never retried: a lost settle let spend pass the cap,
and a fail-open settle that timed out counted nothing. They now assert the promises of the
second version (settles retried and idempotent, expiry charges in full, tombstones refuse a
reservation landing after its request finished).

Also measured (not tests; see the report of branch i13-adversary): DynamoDB item size 47-63 B
per hold (1,000 in flight: 46-61 KB, so every budget write costs 46-62 WCU); SQLite
reserve+settle (key + global cap) median ~1.1 ms as before holds with none in flight, ~1.7 ms
vs ~1.1 ms at 100 in flight, ~9 ms vs ~0.9 ms at 1,000; a reclaiming process whose clock runs
S seconds ahead charges holds S seconds early.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tier_router.spend import holds as holds_module
from tier_router.spend.budget import CapReached, Reservation
from tier_router.spend.holds import SETTLE_TRIES
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.holds import (
    ACTUAL,
    CAP_USD,
    GLOBAL,
    KEY_ITEM,
    TTL,
    WORST,
    LateOn,
    Misbehaving,
    counters,
    guard_on,
    is_reclaim,
    is_release,
    is_settle,
)
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio

CAP = int(CAP_USD * 1_000_000)
EVERY_TRY = 1_000  # a `Misbehaving` count no settle's retries exhaust


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settle retries pause 10-20 ms instead of 0.2-0.8 s (the test time, not the behaviour)."""
    monkeypatch.setattr(holds_module, "SETTLE_BACKOFF_S", (0.01, 0.02))


# --- (a) a settle write that never lands ---------------------------------------------------


@pytest.mark.parametrize("lost", [1, EVERY_TRY], ids=["once", "every-try"])
async def test_a_lost_settle_write_never_lets_spend_pass_the_cap(
    store: Store, clock: FakeClock, lost: int, fast_retries: None
) -> None:
    """(a) A request's settle write is lost (timed out, never applied) once, or on every try;
    the store works again right after. Once: the retry lands it, the request counts its
    $0.80. Every try: its hold stays and is charged in full ($0.90) when it expires. Either
    way the next $0.80 request no longer fits the $1 cap and is refused (the first version
    freed the expired hold: each TTL admitted another $0.80)."""
    clock.now = at(2026, 11, 23, 12)
    flaky = Misbehaving(store, is_settle, "lost", times=0)
    guard = guard_on(flaky, clock, on_store_error="reject")
    admitted = 0
    for i in range(2):  # 2 x $0.80 would be served under a $1 cap
        flaky.left, flaky.hits = lost, 0
        held = await guard.reserve(None, WORST, holder=f"req-{i}")
        if isinstance(held, CapReached):
            break
        admitted += 1
        await guard.settle(held, ACTUAL)  # the request's money was spent
        assert flaky.hits == min(lost, SETTLE_TRIES)
        clock.advance(TTL + 1)
        await guard.status()  # charges what expired
    committed, spent, holds = await counters(store)
    assert admitted * ACTUAL <= CAP, (
        f"admitted {admitted} requests costing ${admitted * ACTUAL / 1e6:.2f} under a ${CAP_USD:.2f} cap; "
        f"the store counts committed ${committed / 1e6:.2f}, spent ${spent / 1e6:.2f}"
    )
    charged = ACTUAL if lost == 1 else WORST  # a write lost once is retried
    assert (committed, spent, holds) == (charged, charged, 0)
    unsettled = (await guard.status())["global"]["unsettled_usd"]
    assert unsettled == ("0.000000" if lost == 1 else "0.900000")


async def test_fail_open_settle_that_times_out_is_retried_and_charged_once(
    store: Store, clock: FakeClock
) -> None:
    """(a), (c). Fail open (`on_store_error: allow`, the default): the reservation write is
    lost, so the request is served `uncounted` and its settle must charge the actual cost.
    The settle's first write (release + tombstone) is applied — as a no-op, there being no
    hold — and then times out. The first version took the timeout for a failure and charged
    nothing, for good. Now the retry finds no hold and charges the actual cost alone, once."""
    clock.now = at(2026, 11, 23, 12)
    claims = Misbehaving(store, lambda o, d: o.get("claim") is not None, "lost", times=1)
    flaky = Misbehaving(claims, is_settle, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    assert held.uncounted
    await guard.settle(held, ACTUAL)
    assert flaky.hits == 1
    assert await counters(store) == (ACTUAL, ACTUAL, 0), "a served request's cost was never counted"
    clock.advance(TTL + 1)
    await guard.status()
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


# --- (c) writes that land but report a timeout ---------------------------------------------


async def test_a_settle_that_lands_but_reports_a_timeout_counts_once(
    store: Store, clock: FakeClock, fast_retries: None
) -> None:
    """DynamoDB applied the settle and the answer was lost. Counted once, then and after the
    TTL (the retry of the settle must not charge the cost a second time)."""
    clock.now = at(2026, 11, 23, 12)
    flaky = Misbehaving(store, is_settle, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    await guard.settle(held, ACTUAL)
    assert flaky.hits == 1
    await asyncio.gather(*guard._tasks)  # whatever the guard does in the background
    assert await counters(store) == (ACTUAL, ACTUAL, 0)
    clock.advance(TTL + 1)
    await guard.status()
    await asyncio.gather(*guard._tasks)
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


async def test_a_late_reservation_plus_an_ambiguous_settle_counts_once(
    store: Store, clock: FakeClock, fast_retries: None
) -> None:
    """The reservation write lands but reports a timeout (fail open: served, `uncounted`),
    and so does its settle. The settle's release found the hold: charged once, and its retry
    (no hold now, a tombstone) charges nothing more."""
    clock.now = at(2026, 11, 23, 12)
    claims = Misbehaving(store, lambda o, d: o.get("claim") is not None, "ambiguous", times=1)
    flaky = Misbehaving(claims, is_settle, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    held = await guard.reserve(None, WORST, holder="req-1")
    assert isinstance(held, Reservation)
    assert held.uncounted
    await guard.settle(held, ACTUAL)
    assert (claims.hits, flaky.hits) == (1, 1)
    await asyncio.gather(*guard._tasks)
    assert await counters(store) == (ACTUAL, ACTUAL, 0)
    clock.advance(TTL + 1)
    await guard.status()
    assert await counters(store) == (ACTUAL, ACTUAL, 0)


async def test_a_reclaim_that_lands_but_reports_a_timeout_charges_once(
    store: Store, clock: FakeClock
) -> None:
    """(c) A process died holding $0.90. After the TTL the next $0.90 request is refused (the
    dead hold is charged in full, not freed), and the reclaim that refusal starts in the
    background lands its write but loses the answer. The hold is charged once: not by the
    next reclaim (forced), not by a status read; the $0.10 left stays usable, no more."""
    clock.now = at(2026, 11, 23, 12)
    dead = guard_on(store, clock)
    assert isinstance(await dead.reserve(None, WORST, holder="dies"), Reservation)
    clock.advance(TTL + 1)
    flaky = Misbehaving(store, is_reclaim, "ambiguous", times=1)
    guard = guard_on(flaky, clock)
    again = await guard.reserve(None, WORST, holder="next")
    assert isinstance(again, CapReached), f"admitted $0.90 with $0.90 charged to a $1 cap: {again}"
    await asyncio.gather(*guard._tasks)  # the refusal's background reclaim
    assert flaky.hits == 1
    assert await counters(store) == (WORST, WORST, 0)
    assert await guard.holds.reclaim(GLOBAL, clock(), force=True) == 0
    status = (await guard.status())["global"]
    assert (status["unsettled_usd"], status["in_flight"]) == ("0.900000", 0)
    assert await counters(store) == (WORST, WORST, 0)
    assert isinstance(await guard.reserve(None, CAP - WORST + 1, holder="over"), CapReached)
    assert isinstance(await guard.reserve(None, CAP - WORST, holder="fits"), Reservation)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_a_crash_with_many_in_flight_is_charged_in_full_by_the_next_refusal(
    tmp_path: Path, clock: FakeClock, backend: str
) -> None:
    """(a), (b). A process dies with 200 small requests in flight ($0.005 each: the whole $1
    cap). After the TTL the next $0.90 request is correctly refused (the dead requests may
    have cost up to $1), and the one reclaim pass that refusal starts in the background
    charges all 200 expired holds in full (RECLAIM_MAX, 1,024 per pass; the first version
    released 64 per refusal and left 136 counting). Nothing more fits today."""
    clock.now = at(2026, 11, 23, 12)
    store: Store = (
        MemoryStore(clock=clock) if backend == "memory" else SQLiteStore(tmp_path / "s.db", clock=clock)
    )
    try:
        dead = guard_on(store, clock)
        for i in range(200):
            assert isinstance(await dead.reserve(None, 5_000, holder=f"dies-{i}"), Reservation)
        clock.advance(TTL + 1)
        guard = guard_on(store, clock)
        outcome = await guard.reserve(None, WORST, holder="next")
        assert isinstance(outcome, CapReached), "admitted past $1 of expired, unsettled reservations"
        await asyncio.gather(*guard._tasks)  # one background reclaim pass, no second refusal
        committed, spent, holds = await counters(store)
        assert (committed, spent, holds) == (CAP, CAP, 0), f"{holds} expired holds left after one pass"
        status = (await guard.status())["global"]
        shown = (status["unsettled_usd"], status["in_flight"], status["held_usd"])
        assert shown == ("1.000000", 0, "0.000000")
        assert isinstance(await guard.reserve(None, 1, holder="more"), CapReached)
    finally:
        await store.aclose()


ODD_HOLDERS = [
    "3f2a9c1e-7b44-4c1a-9e55-0d2b8f6a1c3e",  # a Lambda request id
    "h.1.x.y",  # dots, and a hold-shaped id
    "committed",  # a counter's name
    "\u8acb\u6c42 #:$ \"'",  # non-ASCII, placeholder-like and quote characters
    "x" * 1000,  # long (DynamoDB attribute names may be up to 64 KB)
]


async def test_odd_request_ids_settle_and_expire_once(store: Store, clock: FakeClock) -> None:
    """Hold names carry the request id as it is: every odd one reserves, settles and (left
    unsettled) expires exactly once — charged in full, once — on every backend."""
    clock.now = at(2026, 11, 23, 12)
    guard = guard_on(store, clock, daily_usd=100.0)
    held = [await guard.reserve(None, 10_000, holder=holder) for holder in ODD_HOLDERS]
    left = [await guard.reserve(None, 20_000, holder=holder) for holder in ODD_HOLDERS]
    assert all(isinstance(h, Reservation) for h in held + left)
    for h in held:
        assert isinstance(h, Reservation)
        await guard.settle(h, 1_000)
    n = len(ODD_HOLDERS)
    assert await counters(store) == (n * 1_000 + n * 20_000, n * 1_000, n)
    clock.advance(TTL + 1)
    status = (await guard.status())["global"]
    assert await counters(store) == (n * 21_000, n * 21_000, 0)
    assert (status["unsettled_usd"], status["in_flight"]) == (f"{n * 20_000 / 1e6:.6f}", 0)
    assert await guard.holds.reclaim(GLOBAL, clock(), force=True) == 0  # nothing charged twice
    assert await counters(store) == (n * 21_000, n * 21_000, 0)


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


# --- per-key + global: the reservation's write lands late ---------------------------------


@pytest.mark.parametrize("mode", ["allow", "reject"])
async def test_a_late_reservation_counts_once_on_both_scopes(
    store: Store, clock: FakeClock, mode: str
) -> None:
    """(c) A per-key cap and the global cap: one write reserves both (one day item). It lands
    after the deadline, after the request settled (allow) or was rolled back (reject, in the
    background). The settle / rollback left a tombstone, so the late write is refused when it
    lands (the first version let it land with nobody left to release it): both scopes hold
    settled spend only, before and after the TTL, and the key can spend the rest of its cap.
    (With one item per scope this ran once per late scope.)"""
    clock.now = at(2026, 11, 23, 12)
    worst, actual = 300_000, 200_000  # so the late write would still fit under the key's cap
    late = LateOn(store, GLOBAL)
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
        await asyncio.gather(*guard._tasks)  # the rollback, in the background, finds nothing yet
        charged = 0
    for item in (KEY_ITEM, GLOBAL):
        assert await counters(store, item) == (charged, charged, 0), item
    assert len(late.parked) == 1
    assert await late.land() == [None]  # refused: its request already finished
    for item in (KEY_ITEM, GLOBAL):
        assert await counters(store, item) == (charged, charged, 0), item
    clock.advance(TTL + 1)
    status = await guard.status(["team-a"])
    assert status["global"]["unsettled_usd"] == status["keys"]["team-a"]["unsettled_usd"] == "0.000000"
    for item in (KEY_ITEM, GLOBAL):
        assert await counters(store, item) == (charged, charged, 0), item
    rest = CAP - charged
    again = guard_on(store, clock, per_key_daily_usd=CAP_USD, daily_usd=3.0)
    assert isinstance(await again.reserve("team-a", rest + 1, holder="req-2"), CapReached)
    assert isinstance(await again.reserve("team-a", rest, holder="req-3"), Reservation)


@pytest.mark.parametrize("mode", ["allow", "reject"])
@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
async def test_a_settle_whose_every_write_lands_late_counts_once(
    store: Store, clock: FakeClock, mode: str, reverse: bool, fast_retries: None
) -> None:
    """(a), (b), (c) The key scope's reservation write AND every try of its settle (allow) or
    rollback (reject) time out and land later — in the order sent, or the reverse (the
    settle's tries first: each finds no hold and is refused whole, tombstone included; then
    the reservation lands with nobody left to release it). In order: the key counts what the
    request cost. Reversed: the key over-counts — the hold is charged in full at the TTL (the
    safe direction). The global scope counts the cost once either way. (The first version's
    `LateOn` delayed every claim; only the reservation claimed then.) One write reserves both
    scopes now, so both are late: each counts what the key's scope did."""
    clock.now = at(2026, 11, 23, 12)
    worst, actual = 300_000, 200_000
    late = LateOn(store, GLOBAL, every_claim=True)
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
        await asyncio.gather(*guard._tasks)
        charged = 0
    assert len(late.parked) == 1 + SETTLE_TRIES  # the reservation, then every try of the settle
    for scope in (KEY_ITEM, GLOBAL):
        assert await counters(store, scope) == (0, 0, 0)
    landed = await late.land(reverse=reverse)
    if not reverse:
        assert sum(new is not None for new in landed) == 2  # the reservation, then its settle
        for scope in (KEY_ITEM, GLOBAL):
            assert await counters(store, scope) == (charged, charged, 0)
    # Reversed, the spec'd outcome is an over-count (the hold lands last, is charged in full at
    # the TTL); a settle that left its tombstone anyway would count just the cost. Either is
    # once, within the reservation; anything else (twice, never, a hold left) is not.
    allowed = {(worst, worst, 0), (charged, charged, 0)} if reverse else {(charged, charged, 0)}
    clock.advance(TTL + 1)
    status = await guard.status(["team-a"])
    key = await counters(store, KEY_ITEM)
    assert key in allowed
    unsettled = "0.300000" if key[1] == worst else "0.000000"
    assert status["keys"]["team-a"]["unsettled_usd"] == status["global"]["unsettled_usd"] == unsettled
    assert await counters(store, GLOBAL) == key


async def test_a_global_refusal_leaves_nothing_to_roll_back(store: Store, clock: FakeClock) -> None:
    """The key's cap has room, the global cap refuses (another key spent it): one refused write
    for both scopes, so there is no key hold to roll back (with one item per scope there was,
    and a lost rollback over-counted the key until the TTL). Nothing changes on either scope."""
    clock.now = at(2026, 11, 23, 12)
    other = guard_on(store, clock, per_key_daily_usd=CAP_USD)
    spent = await other.reserve("team-b", 500_000, holder="b")
    assert isinstance(spent, Reservation)
    await other.settle(spent, 500_000)
    flaky = Misbehaving(store, is_release, "lost", times=EVERY_TRY)
    guard = guard_on(flaky, clock, per_key_daily_usd=CAP_USD)
    refused = await guard.reserve("team-a", WORST, holder="a")
    assert isinstance(refused, CapReached)
    assert refused.scope == "global"
    assert flaky.hits == 0  # no release was needed
    assert await counters(store, KEY_ITEM) == (0, 0, 0)
    clock.advance(TTL + 1)
    await guard.status(["team-a"])
    assert await counters(store, KEY_ITEM) == (0, 0, 0)
    assert await counters(store, GLOBAL) == (500_000, 500_000, 0)
