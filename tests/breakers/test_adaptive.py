"""Adaptive breakers (issue 14): failures are counted over a rolling window, not in
clock-aligned buckets where failures either side of an edge never add up; recovery starts
short, backs off on every failed probe up to a cap, and starts short again once a probe
succeeded — so a provider that comes back gets traffic again within seconds."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tier_router.breakers import CLOSED, BreakerBoard, BreakerConfig
from tier_router.routing.loader import RulesError, parse_rules, read_yaml

from tests.breakers.support import CONFIG, fail, open_breaker, view_of
from tests.support.clock import FakeClock
from tests.support.demo import unjudged_demo
from tests.support.stores import Counting

pytestmark = pytest.mark.anyio

DEMO_RULES = unjudged_demo()
UNCACHED = replace(CONFIG, cache_ttl_s=0)  # every snapshot reads the store: time is exact


# --- the rolling window -------------------------------------------------------------------


async def test_failures_either_side_of_a_bucket_edge_add_up(board: BreakerBoard, clock: FakeClock) -> None:
    """4 failures within 2 s open the breaker (threshold 3 in 30 s), whichever bucket each
    falls in. (Clock-aligned windows counted 2 + 2 and kept it closed.)"""
    clock.advance(CONFIG.window_s - 1)  # 1 s before a bucket edge
    await fail(board, "p", 2)
    clock.advance(2)  # 1 s after it
    await fail(board, "p", 2)
    view = await view_of(board, "p", clock)
    assert view.state == "open"


async def test_another_process_counts_the_previous_buckets_failures(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    clock.advance(CONFIG.window_s - 1)
    await fail(board, "p", 2)
    clock.advance(2)
    other = BreakerBoard(store, CONFIG, clock=clock)  # another copy: nothing cached
    await fail(other, "p", 2)
    assert (await view_of(board, "p", clock)).state == "open"


async def test_old_failures_fade_out_of_the_rolling_window(board: BreakerBoard, clock: FakeClock) -> None:
    await fail(board, "p", 2)  # at the start of a bucket
    clock.advance(1.5 * CONFIG.window_s - CONFIG.cache_ttl_s)
    assert (await view_of(board, "p", clock)).failures == pytest.approx(1.0)  # half the bucket
    clock.advance(CONFIG.window_s / 2 - CONFIG.cache_ttl_s)
    assert (await view_of(board, "p", clock)).failures == 0


async def test_a_success_forgets_the_failures_that_opened_the_breaker(
    board: BreakerBoard, clock: FakeClock
) -> None:
    clock.advance(CONFIG.window_s - 1)
    await fail(board, "p", 2)
    clock.advance(2)
    await fail(board, "p", 2)  # opened by failures in two buckets
    clock.advance(CONFIG.recovery_s)
    view = await view_of(board, "p", clock)
    assert await board.admit("p", view) is True
    await board.record_success("p", view)
    assert await view_of(board, "p", clock) == CLOSED
    await fail(board, "p", CONFIG.failure_threshold - 1)  # neither bucket's old failures count
    assert (await view_of(board, "p", clock)).state == "closed"


# --- recovery that backs off --------------------------------------------------------------


async def probe_fails_after(board: BreakerBoard, clock: FakeClock, since: float, period: float) -> None:
    """The breaker, (re)opened at `since`, blocks for exactly `period` s; then one probe goes
    through and fails."""
    clock.now = since + period - 0.5
    view = (await board.snapshot(["p"]))["p"]
    assert view.state == "open", f"half-open before {period} s"
    assert await board.admit("p", view) is False
    clock.now = since + period
    view = (await board.snapshot(["p"]))["p"]
    assert view.state == "half_open", f"still open after {period} s"
    assert await board.admit("p", view) is True
    await board.record_failure("p", view)


async def test_failed_probes_back_off_up_to_the_cap(store: Counting, clock: FakeClock) -> None:
    board = BreakerBoard(store, UNCACHED, clock=clock)  # recovery 20 s, x2 (default), cap 60 s
    since = (await open_breaker(board, "p", clock)).opened_at
    assert since is not None
    for period in (20, 40, 60, 60):
        await probe_fails_after(board, clock, since, period)
        since = clock.now
    assert (await board.snapshot(["p"]))["p"].failed_probes == 4


async def test_a_successful_probe_starts_the_next_opening_short(store: Counting, clock: FakeClock) -> None:
    board = BreakerBoard(store, UNCACHED, clock=clock)
    since = (await open_breaker(board, "p", clock)).opened_at
    assert since is not None
    await probe_fails_after(board, clock, since, 20)
    since = clock.now
    clock.now = since + 40
    view = (await board.snapshot(["p"]))["p"]
    assert await board.admit("p", view) is True
    await board.record_success("p", view)  # recovered

    since = (await open_breaker(board, "p", clock)).opened_at  # and down again
    assert since is not None
    await probe_fails_after(board, clock, since, 20)  # short again, not 80 s


def test_recovery_periods_and_their_bounds() -> None:
    config = BreakerConfig(recovery_s=5, recovery_backoff=2, recovery_max_s=60)
    assert [config.recovery_for(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    assert config.recovery_for(10**9) == 60  # a provider down for months: still a finite number
    assert BreakerConfig(recovery_s=5, recovery_backoff=1, recovery_max_s=60).recovery_for(7) == 5
    with pytest.raises(ValueError, match="recovery_max_s"):
        BreakerConfig(recovery_s=30, recovery_max_s=10)
    with pytest.raises(ValueError, match="recovery_backoff"):
        BreakerConfig(recovery_backoff=0.5)


def test_the_rules_file_refuses_a_cap_below_the_first_recovery() -> None:
    raw = read_yaml(DEMO_RULES)
    with pytest.raises(RulesError, match="recovery_max_s must be at least recovery_s"):
        parse_rules({**raw, "breakers": {"recovery_s": 30, "recovery_max_s": 10}}, "r.yaml")
    spec = parse_rules(raw, "r.yaml").spec.breakers  # the documented defaults
    assert (spec.window_s, spec.recovery_s, spec.recovery_backoff, spec.recovery_max_s) == (30, 5, 2, 60)
