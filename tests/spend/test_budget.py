"""Budgets: pacing downgrades, the hard cap (incl. 200 concurrent requests), settling."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from tier_router.schema import BudgetConfig, PacingConfig, Price, Priority
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.spend.counters import day_key
from tier_router.spend.holds import HOLD_PREFIX
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Failing, Observing, Slow, Watched

pytestmark = pytest.mark.anyio

DAY = "2026-11-23"
NOON = at(2026, 11, 23, 12)
USD = 1_000_000
GLOBAL = f"spend:{DAY}"


def key_totals(value: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """One router key's money on a day item: its `kc.<key>` / `ks.<key>` as committed / spent."""
    value = value or {}
    tag = quote(key, safe="")
    fields = {"committed": f"kc.{tag}", "spent": f"ks.{tag}"}
    return {name: value[f] for name, f in fields.items() if f in value}


THREE_TIERS = {"premium": "standard", "standard": "budget"}


def budgets(**config: Any) -> BudgetConfig:
    """A `budgets:` section as a rules file with premium > standard > budget tiers gets it
    (a section alone has no tiers to derive the downgrade map from)."""
    config.setdefault("pacing", PacingConfig(downgrade=THREE_TIERS))
    return BudgetConfig(**config)


def make(store: Store, clock: FakeClock, **config: Any) -> BudgetGuard:
    return BudgetGuard(store, budgets(**config), clock=clock)


def totals(value: dict[str, Any] | None) -> dict[str, Any]:
    """A budget item's money: `committed` and `spent` (without holds, tombstones and tallies)."""
    return {name: v for name, v in (value or {}).items() if name in ("committed", "spent")}


def holds(value: dict[str, Any] | None) -> dict[str, Any]:
    return {name: v for name, v in (value or {}).items() if name.startswith(HOLD_PREFIX)}


async def spend(guard: BudgetGuard, micro: int, key: str | None = None) -> None:
    reservation = await guard.reserve(key, micro)
    assert isinstance(reservation, Reservation)
    await guard.settle(reservation, micro)


# --- pacing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "spent_usd", "downgraded"),
    [
        # noon: half the day gone, pace = $12 of $24; slack 0.1 → low above 1.1×, normal above 1.2×
        (NOON, 0.0, set()),
        (NOON, 12.0, set()),
        (NOON, 13.0, set()),  # 8% ahead
        (NOON, 13.5, {"low"}),  # 12.5% ahead
        (NOON, 15.0, {"low", "normal"}),  # 25% ahead
        (NOON, 23.9, {"low", "normal"}),  # way ahead: still only one step, and never high
        # 00:30: the pace floor (min_day_fraction = 1/24) → $1 allowed, not $0.50
        (at(2026, 11, 23, 0, 30), 0.9, set()),
        (at(2026, 11, 23, 0, 30), 1.15, {"low"}),
        (at(2026, 11, 23, 0, 30), 1.3, {"low", "normal"}),
        # 18:00: pace = $18
        (at(2026, 11, 23, 18), 19.5, set()),
        (at(2026, 11, 23, 18), 20.0, {"low"}),
        (at(2026, 11, 23, 18), 22.0, {"low", "normal"}),
    ],
)
async def test_pacing_downgrades_low_first_then_normal_never_high(
    store: Store, clock: FakeClock, now: float, spent_usd: float, downgraded: set[str]
) -> None:
    clock.now = at(2026, 11, 23, 0, 0, 1)
    guard = make(store, clock, daily_usd=24.0)
    if spent_usd:
        await spend(guard, int(spent_usd * USD))
    clock.now = now + 5  # past the pacing cache
    for priority in ("low", "normal", "high"):
        decision = await guard.pace("premium", priority, None)
        if priority in downgraded:
            assert (decision.tier, decision.downgraded_from) == ("standard", "premium")
            assert decision.reason is not None
            assert "ahead of pace for $24.00/day" in decision.reason
        else:
            assert (decision.tier, decision.downgraded_from, decision.reason) == ("premium", None, None)


async def test_reason_says_how_far_ahead(clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(MemoryStore(clock=clock), clock, daily_usd=24.0)
    await spend(guard, 15 * USD)
    decision = await guard.pace("standard", "normal", None)
    assert decision.tier == "budget"
    assert decision.downgraded
    assert decision.reason == "spend $15.00 is 25% ahead of pace for $24.00/day (normal priority)"


async def test_day_start_hour_moves_the_pace(clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 20)  # 12 h into a day that starts at 08:00 UTC
    guard = make(MemoryStore(clock=clock), clock, daily_usd=24.0, day_start_hour=8)
    await spend(guard, 13_500_000)
    assert (await guard.pace("premium", "low", None)).downgraded
    assert not (await guard.pace("premium", "normal", None)).downgraded


async def test_per_key_pacing(store: Store, clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(store, clock, per_key_daily_usd=2.4)  # pace $1.20 per key at noon
    await spend(guard, 1_500_000, "alice")
    alice = await guard.pace("premium", "normal", "alice")
    assert alice.tier == "standard"
    assert (
        alice.reason == "router key 'alice': spend $1.50 is 25% ahead of pace for $2.40/day (normal priority)"
    )
    assert (await guard.pace("premium", "normal", "bob")).tier == "premium"
    assert (await guard.pace("premium", "normal", None)).tier == "premium"


async def test_the_most_ahead_scope_explains(clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(MemoryStore(clock=clock), clock, daily_usd=100.0, per_key_daily_usd=2.4)
    await spend(guard, 1_500_000, "alice")  # global: far behind pace; alice: 25% ahead
    decision = await guard.pace("premium", "low", "alice")
    assert decision.reason is not None
    assert decision.reason.startswith("router key 'alice'")


async def test_pacing_reads_nothing_when_it_cannot_matter(clock: FakeClock) -> None:
    observed = Observing(MemoryStore(clock=clock))
    guard = BudgetGuard(observed, budgets(daily_usd=24.0), clock=clock)
    assert (await guard.pace("premium", "high", "k")).tier == "premium"
    assert (await guard.pace("budget", "low", "k")).tier == "budget"  # bottom of the map
    assert (await guard.pace(None, "low", "k")).tier is None  # explicit model, no tier
    assert observed.calls == {}
    no_budget = BudgetGuard(observed, budgets(), clock=clock)
    assert (await no_budget.pace("premium", "low", "k")).tier == "premium"
    assert observed.calls == {}


async def test_pacing_cache_is_short_and_shared(clock: FakeClock) -> None:
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    observed = Observing(inner)
    guard = BudgetGuard(observed, budgets(daily_usd=24.0), clock=clock)
    await guard.layouts.pinned(
        DAY
    )  # the day's first request pins its layout (spend.layout): not counted here
    observed.calls.clear()
    results = await asyncio.gather(*(guard.pace("premium", "low", None) for _ in range(20)))
    assert {r.tier for r in results} == {"premium"}
    assert observed.calls["get_many"] == 1  # 20 concurrent callers, one read
    await inner.add(GLOBAL, {"spent": 20 * USD, "committed": 20 * USD})  # another process spends
    clock.advance(0.5)
    assert (await guard.pace("premium", "low", None)).tier == "premium"  # still cached
    clock.advance(0.6)
    assert (await guard.pace("premium", "low", None)).tier == "standard"
    assert observed.calls["get_many"] == 2


async def test_pacing_ignores_in_flight_reservations(clock: FakeClock) -> None:
    """A big worst-case hold is not spend: pacing reads `spent`, the cap reads `committed`."""
    clock.now = NOON
    guard = make(MemoryStore(clock=clock), clock, daily_usd=24.0)
    held = await guard.reserve(None, 20 * USD)
    assert isinstance(held, Reservation)
    clock.advance(5)
    assert not (await guard.pace("premium", "low", None)).downgraded
    await guard.settle(held, 20 * USD)
    assert (await guard.pace("premium", "low", None)).downgraded


async def test_pacing_config_and_known_tiers(clock: FakeClock) -> None:
    clock.now = NOON
    store = MemoryStore(clock=clock)
    await store.add(GLOBAL, {"spent": 20 * USD})
    off = BudgetGuard(store, budgets(daily_usd=24.0, pacing=PacingConfig(enabled=False)), clock=clock)
    assert not (await off.pace("premium", "low", None)).downgraded
    custom = budgets(daily_usd=24.0, pacing=PacingConfig(downgrade={"gold": "silver"}, slack=0.5))
    assert (await BudgetGuard(store, custom, clock=clock).pace("gold", "low", None)).tier == "silver"
    partial = BudgetGuard(store, budgets(daily_usd=24.0), clock=clock, tiers={"premium", "standard"})
    assert partial.downgrade == {"premium": "standard"}  # standard → budget names an unknown tier
    unmapped = BudgetGuard(store, BudgetConfig(daily_usd=24.0), clock=clock)  # no tiers to derive from
    assert unmapped.downgrade == {}
    assert not (await unmapped.pace("premium", "low", None)).downgraded


# --- the hard cap -----------------------------------------------------------------------


async def test_cap_refuses_and_settling_frees_room(store: Store, clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 21)
    guard = make(store, clock, daily_usd=1.0)
    first = await guard.reserve("k", 600_000)
    assert isinstance(first, Reservation)
    assert first.items == (GLOBAL,)
    refused = await guard.reserve("k", 600_000)
    assert isinstance(refused, CapReached)
    assert (refused.scope, refused.cap, refused.requested) == ("global", USD, 600_000)
    assert refused.retry_after_s == 3 * 3600
    assert refused.fallback_tier is None
    assert "daily budget of $1.00" in refused.message
    assert "resets in 3h00m" in refused.message
    await guard.settle(first, 300_000)
    second = await guard.reserve("k", 600_000)
    assert isinstance(second, Reservation)
    item = await store.get(GLOBAL)
    assert totals(item) == {"committed": 900_000, "spent": 300_000}
    assert list(holds(item).values()) == [600_000]  # the second reservation, in flight
    exact = await guard.reserve("k", 100_000)  # up to the cap exactly is allowed
    assert isinstance(exact, Reservation)
    assert isinstance(await guard.reserve("k", 1), CapReached)


async def test_per_key_caps(store: Store, clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(store, clock, daily_usd=100.0, per_key_daily_usd=2.0, key_daily_usd={"alice": 1.0})
    assert isinstance(await guard.reserve("alice", 900_000), Reservation)
    refused = await guard.reserve("alice", 200_000)
    assert isinstance(refused, CapReached)
    assert refused.scope == "key"
    assert refused.cap == USD
    assert "router key 'alice'" in refused.message
    assert isinstance(await guard.reserve("bob", 1_900_000), Reservation)
    assert isinstance(await guard.reserve("bob", 200_000), CapReached)
    assert isinstance(await guard.reserve(None, 50 * USD), Reservation)  # no key: global only
    assert (await store.get(GLOBAL) or {})["committed"] == 900_000 + 1_900_000 + 50 * USD


async def test_key_and_global_cap_are_one_write(clock: FakeClock) -> None:
    """Both caps in one conditional update: an admitted reservation is one add, a refused one
    an add and the read that names the refusing cap."""
    observed = Observing(MemoryStore(clock=clock))
    guard = BudgetGuard(observed, budgets(daily_usd=100.0, per_key_daily_usd=1.0), clock=clock)
    await guard.layouts.pinned(day_key(clock(), 0))  # once per day and process (spend.layout)
    observed.calls.clear()
    assert isinstance(await guard.reserve("k", USD // 2), Reservation)
    assert observed.calls == {"add": 1}
    refused = await guard.reserve("k", USD)
    assert isinstance(refused, CapReached)
    assert refused.scope == "key"
    assert observed.calls["add"] == 2


async def test_global_refusal_leaves_the_key_untouched(store: Store, clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(store, clock, daily_usd=1.0, per_key_daily_usd=10.0)
    ok = await guard.reserve("alice", 600_000)
    assert isinstance(ok, Reservation)
    assert ok.items == (GLOBAL,)
    refused = await guard.reserve("bob", 600_000)
    assert isinstance(refused, CapReached)
    assert refused.scope == "global"
    assert key_totals(await store.get(GLOBAL), "bob") == {}
    assert key_totals(await store.get(GLOBAL), "alice") == {"committed": 600_000}


async def test_on_cap_names_the_fallback_tier(clock: FakeClock) -> None:
    guard = make(MemoryStore(clock=clock), clock, daily_usd=1.0, on_cap="tier:budget")
    refused = await guard.reserve(None, 2 * USD)
    assert isinstance(refused, CapReached)
    assert refused.fallback_tier == "budget"
    assert isinstance(await guard.reserve(None, 10_000), Reservation)  # the cheaper retry fits


async def test_settle_exactly_once_and_its_variants(store: Store, clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(store, clock, daily_usd=10.0)
    a = await guard.reserve(None, 500)
    assert isinstance(a, Reservation)
    await asyncio.gather(guard.settle(a, 200), guard.settle(a, 200))
    await guard.settle(a, 999)  # ignored: already settled
    assert a.settled
    assert a.actual == 200
    assert await store.get(GLOBAL) == {"committed": 200, "spent": 200}
    b = await guard.reserve(None, 500)
    assert isinstance(b, Reservation)
    await guard.settle(b, None)  # cost unknown: the reservation is charged
    c = await guard.reserve(None, 500)
    assert isinstance(c, Reservation)
    await guard.settle(c, 0)  # failed before a provider charged anything
    d = await guard.reserve(None, 500)
    assert isinstance(d, Reservation)
    await guard.settle(d, 800)  # under-reserved: committed goes up by the difference
    assert await store.get(GLOBAL) == {"committed": 200 + 500 + 0 + 800, "spent": 200 + 500 + 0 + 800}
    with pytest.raises(ValueError, match="non-negative"):
        await guard.settle(Reservation(DAY, None, 1, (GLOBAL,), 0.0), -1)
    with pytest.raises(ValueError, match="non-negative"):
        await guard.reserve(None, -5)


async def test_free_and_uncapped_requests_write_nothing(clock: FakeClock) -> None:
    observed = Observing(MemoryStore(clock=clock))
    capped = BudgetGuard(observed, budgets(daily_usd=1.0), clock=clock)
    free = await capped.reserve("k", 0)
    assert isinstance(free, Reservation)
    assert free.items == ()
    await capped.settle(free, 0)
    uncapped = BudgetGuard(observed, budgets(), clock=clock)
    held = await uncapped.reserve("k", 5 * USD)
    assert isinstance(held, Reservation)
    assert held.items == ()
    await uncapped.settle(held, 3 * USD)
    assert observed.calls == {}


async def test_settle_after_midnight_charges_the_reservation_day(store: Store, clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 23, 59, 59)
    guard = make(store, clock, daily_usd=1.0)
    late = await guard.reserve(None, 900_000)
    assert isinstance(late, Reservation)
    assert late.day == DAY
    clock.now = at(2026, 11, 24, 0, 0, 2)
    assert isinstance(await guard.reserve(None, 900_000), Reservation)  # a new day, a new budget
    await guard.settle(late, 400_000)
    assert await store.get(GLOBAL) == {"committed": 400_000, "spent": 400_000}
    assert (await store.get("spend:2026-11-24") or {})["committed"] == 900_000


async def test_estimate_takes_the_worst_candidate() -> None:
    @dataclass
    class Route:
        price: Price
        max_output: int | None

    cheap = Route(Price(input=0.1, output=0.4), 8000)
    dear = Route(Price(input=3.0, output=15.0), 64_000)
    unbounded = Route(Price(input=1.0, output=2.0), None)
    guard = BudgetGuard(MemoryStore(), budgets(reservation_margin=1.5, default_max_output_tokens=4096))
    # input 1000 → 1500 reserved; output bounded by max_tokens (500) below max_output
    assert guard.estimate([cheap, dear], 1000, 500) == 1500 * 3 + 500 * 15
    # no max_tokens: the model's max_output bounds it
    assert guard.estimate([cheap, dear], 1000, None) == 1500 * 3 + 64_000 * 15
    # neither: the configured default
    assert guard.estimate([unbounded], 1000, None) == 1500 * 1 + 4096 * 2
    assert guard.estimate([], 1000, None) == 0
    # n choices multiply the output; cache writes price the input at the dearest multiplier (2×)
    assert guard.estimate([cheap, dear], 1000, 500, n=8) == 1500 * 3 + 8 * 500 * 15
    assert guard.estimate([dear], 1000, 500, cache_writes=True) == 3000 * 3 + 500 * 15


# --- failure paths ----------------------------------------------------------------------


async def test_cancelled_reserve_releases_its_reservation(clock: FakeClock) -> None:
    clock.now = NOON
    inner = Watched(MemoryStore(clock=clock))
    guard = BudgetGuard(Slow(inner, 0.05), budgets(daily_usd=1.0, per_key_daily_usd=1.0), clock=clock)
    with anyio.move_on_after(0.02):  # during the reservation's add
        await guard.reserve("k", 300_000)
        pytest.fail("reserve should have been cancelled")
    await inner.until(GLOBAL, {"committed": 0})  # the add finished, then was released
    assert key_totals(await inner.get(GLOBAL), "k") == {"committed": 0}  # both scopes at once


async def test_cancelled_settle_still_writes(clock: FakeClock) -> None:
    clock.now = NOON
    inner = Watched(MemoryStore(clock=clock))
    guard = BudgetGuard(Slow(inner, 0.05), budgets(daily_usd=1.0), clock=clock)
    held = await guard.reserve(None, 300_000)
    assert isinstance(held, Reservation)
    with anyio.move_on_after(0.01):
        await guard.settle(held, 100_000)
    assert totals(await inner.get(GLOBAL)) == {"committed": 300_000}  # the caller is gone, the write is not
    await inner.until(GLOBAL, {"committed": 100_000, "spent": 100_000})


async def test_store_down_fails_open_by_default(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    clock.now = NOON
    broken = Failing(MemoryStore(clock=clock))
    guard = BudgetGuard(broken, budgets(daily_usd=1.0), clock=clock)
    with caplog.at_level(logging.WARNING, "tier_router.spend.budget"):
        held = await guard.reserve("k", 2 * USD)  # over the cap, but we cannot tell
        assert isinstance(held, Reservation)
        assert held.uncounted
        assert held.items == ()  # no layout could be read: the settle finds it, and charges there
        await guard.settle(held, 100)
        assert not (await guard.pace("premium", "low", "k")).downgraded
        await guard.reserve("k", 1)
    assert sum("budget store failed" in r.message for r in caplog.records) == 1  # once per outage


async def test_store_down_can_reject(clock: FakeClock) -> None:
    broken = Failing(MemoryStore(clock=clock))
    guard = BudgetGuard(broken, budgets(daily_usd=1.0, on_store_error="reject"), clock=clock)
    with pytest.raises(StoreUnavailable):
        await guard.reserve("k", 1)


@pytest.mark.parametrize("mode", ["allow", "reject"])
async def test_store_fails_on_the_reservation_write(clock: FakeClock, mode: str) -> None:
    """The one write of a reservation with both caps fails before it applies."""
    clock.now = NOON
    inner = MemoryStore(clock=clock)
    flaky = Failing(inner, down=False, fail_adds={1})
    config = budgets(daily_usd=1.0, per_key_daily_usd=1.0, on_store_error=mode)  # type: ignore[arg-type]
    guard = BudgetGuard(flaky, config, clock=clock)
    if mode == "reject":
        with pytest.raises(StoreUnavailable):
            await guard.reserve("k", 300_000)
        for _ in range(100):  # the rollback runs in the background (the 503 does not wait)
            if (await inner.get(GLOBAL) or {}).get("unheld") == 1:
                break
            await asyncio.sleep(0.01)
        value = await inner.get(GLOBAL)
        assert totals(value) == {}  # nothing held (a tombstone left)
        assert key_totals(value, "k") == {}
        assert (value or {}).get("unheld") == 1
        return
    held = await guard.reserve("k", 300_000)
    assert isinstance(held, Reservation)
    assert held.uncounted
    assert held.items == (GLOBAL,)
    await guard.settle(held, 100_000)
    # No hold landed, so the settle charges the cost, on both scopes.
    value = await inner.get(GLOBAL)
    assert totals(value) == {"committed": 100_000, "spent": 100_000}
    assert key_totals(value, "k") == {"committed": 100_000, "spent": 100_000}


async def test_status(clock: FakeClock) -> None:
    clock.now = NOON
    guard = make(MemoryStore(clock=clock), clock, daily_usd=24.0, key_daily_usd={"alice": 2.0})
    await spend(guard, 1_500_000, "alice")
    await guard.reserve("alice", 100_000)
    status = await guard.status(["alice", "bob"])
    assert status["day"] == DAY
    assert status["global"] == {
        "cap_usd": "24.000000",
        "committed_usd": "1.600000",
        "spent_usd": "1.500000",
        "pace_usd": "12.000000",
        "in_flight": 1,
        "held_usd": "0.100000",
        "unsettled_usd": "0.000000",
    }
    assert status["keys"] == {
        "alice": {
            "cap_usd": "2.000000",
            "committed_usd": "1.600000",
            "spent_usd": "1.500000",
            "pace_usd": "1.000000",
            "in_flight": 1,
            "held_usd": "0.100000",
            "unsettled_usd": "0.000000",
        }
    }


# --- concurrency: the hard cap holds --------------------------------------------------------

WORST = USD  # each request may cost up to $1
REQUESTS, PARALLEL = 200, 16


async def run_load(
    guards: list[BudgetGuard], key: str | None, actual_range: tuple[int, int], seed: int = 7
) -> tuple[list[tuple[int, int]], int]:
    """200 requests, 16 at a time: reserve WORST, wait a little, settle the actual cost."""
    rng = random.Random(seed)
    plans = [(rng.uniform(0, 0.004), rng.randint(*actual_range)) for _ in range(REQUESTS)]
    limiter = anyio.Semaphore(PARALLEL)
    admitted: list[tuple[int, int]] = []
    refused = 0

    async def one(i: int, delay: float, actual: int) -> None:
        nonlocal refused
        guard = guards[i % len(guards)]
        async with limiter:
            reservation = await guard.reserve(key, WORST)
            if isinstance(reservation, CapReached):
                refused += 1
                return
            try:
                await anyio.sleep(delay)
            finally:
                await guard.settle(reservation, actual)
            admitted.append((reservation.reserved, actual))

    async with anyio.create_task_group() as tg:
        for i, (delay, actual) in enumerate(plans):
            tg.start_soon(one, i, delay, actual)
    return admitted, refused  # every settle was awaited (none was cancelled): all are written


@pytest.mark.parametrize(
    ("config", "scope"),
    [
        ({"daily_usd": 50.0}, "committed"),
        ({"daily_usd": 1000.0, "per_key_daily_usd": 50.0}, "kc.load"),
    ],
    ids=["global-cap", "key-cap"],
)
async def test_concurrent_requests_never_exceed_the_cap(
    store: Store, clock: FakeClock, config: dict[str, Any], scope: str
) -> None:
    clock.now = NOON
    cap = 50 * WORST  # room for 50 worst-case requests
    observed = Observing(store)
    guard = BudgetGuard(observed, budgets(**config), clock=clock)
    admitted, refused = await run_load([guard], "load", (WORST // 2, WORST))
    actual = sum(a for _, a in admitted)
    final = await store.get(GLOBAL) or {}
    spent = "ks.load" if scope == "kc.load" else "spent"

    assert len(admitted) + refused == REQUESTS
    assert observed.peak[GLOBAL, scope] <= cap  # never above the cap, not even briefly
    assert final[scope] == final[spent] == actual <= cap  # settles replaced every hold
    # At least the 50 worst cases always fit; at most cap / cheapest possible request.
    assert 50 <= len(admitted) <= cap // (WORST // 2)
    # Expected ≈ cap / mean actual (0.75 × WORST) ≈ 67, less the tail; runs see 63-66.
    assert 55 <= len(admitted) <= 75
    # Close to the cap: a refusal means committed > cap − WORST, and then at most the 16
    # in-flight holds can still shrink, each by at most WORST/2.
    assert actual >= cap - WORST - PARALLEL * WORST // 2


async def test_overrun_is_bounded_by_under_reservation(store: Store, clock: FakeClock) -> None:
    """Some requests cost more than reserved (actual up to 1.2× worst): the cap can be
    exceeded, but only by the sum of those excesses — the documented bound."""
    clock.now = NOON
    cap = 50 * WORST
    guard = BudgetGuard(store, budgets(daily_usd=50.0), clock=clock)
    admitted, _ = await run_load([guard], None, (WORST // 2, WORST * 6 // 5), seed=11)
    final = await store.get(GLOBAL) or {}
    excess = sum(max(0, a - r) for r, a in admitted)
    assert excess > 0
    assert final["committed"] == sum(a for _, a in admitted) <= cap + excess


async def test_two_processes_share_one_sqlite_cap(tmp_path: Path, clock: FakeClock) -> None:
    """Two stores (connections) on one file, as two gateway processes would have."""
    clock.now = NOON
    stores = [SQLiteStore(tmp_path / "shared.db", clock=clock) for _ in range(2)]
    observed = [Observing(s) for s in stores]
    guards = [BudgetGuard(o, budgets(daily_usd=50.0), clock=clock) for o in observed]
    try:
        admitted, _ = await run_load(guards, None, (WORST // 2, WORST))
        final = await stores[0].get(GLOBAL) or {}
        assert max(o.peak[GLOBAL, "committed"] for o in observed) <= 50 * WORST
        assert final["committed"] == sum(a for _, a in admitted) <= 50 * WORST
        assert len(admitted) >= 50
    finally:
        for s in stores:
            await s.aclose()


def test_priority_literal_matches_the_schema() -> None:
    priorities: tuple[Priority, ...] = ("low", "normal", "high")
    assert set(priorities) == {"low", "normal", "high"}


async def test_reasons_are_header_safe(clock: FakeClock) -> None:
    clock.now = NOON
    store = MemoryStore(clock=clock)
    guard = make(store, clock, key_daily_usd={"ключ": 0.0})
    await store.add(GLOBAL, {"ks.%D0%BA%D0%BB%D1%8E%D1%87": 5})
    decision = await guard.pace("premium", "low", "ключ")
    assert decision.reason == (
        "router key '\\u043a\\u043b\\u044e\\u0447': spend $0.00 is infinitely ahead of pace"
        " for $0.00/day (low priority)"
    )
    decision.reason.encode("ascii")
