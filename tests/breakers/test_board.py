"""The breaker board: the state machine, the probe lease, the hot-path snapshot, sharing
through a real SQLite file, and failing open when the store is down. (Which candidates a
request tries is `test_plan.py`.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from tier_router.breakers import CLOSED, BreakerBoard, BreakerConfig, BreakerView, least_recently_failed
from tier_router.store.sqlite import SQLiteStore

from tests.breakers.support import CONFIG, fail, open_breaker, view_of
from tests.support.clock import FakeClock
from tests.support.stores import Broken, Counting

pytestmark = pytest.mark.anyio


# --- the state machine ------------------------------------------------------------------


async def test_unknown_breakers_are_closed(board: BreakerBoard) -> None:
    views = await board.snapshot(["provider:openai", "model:gpt-4o"])
    assert views == {"provider:openai": CLOSED, "model:gpt-4o": CLOSED}
    assert await board.admit("provider:openai", views["provider:openai"]) is True


async def test_threshold_failures_open_the_breaker(board: BreakerBoard, clock: FakeClock) -> None:
    await fail(board, "p", CONFIG.failure_threshold - 1)
    view = await view_of(board, "p", clock)
    assert (view.state, view.failures) == ("closed", CONFIG.failure_threshold - 1)

    opened_at = clock.now
    await fail(board, "p")
    view = await view_of(board, "p", clock)
    assert view.state == "open"
    assert view.opened_at == opened_at
    assert view.last_failure_at == opened_at
    assert await board.admit("p", view) is False


async def test_failures_older_than_the_window_do_not_count(board: BreakerBoard, clock: FakeClock) -> None:
    await fail(board, "p", CONFIG.failure_threshold - 1)
    clock.advance(2 * CONFIG.window_s)
    assert (await view_of(board, "p", clock)).failures == 0
    await fail(board, "p", CONFIG.failure_threshold - 1)
    assert (await view_of(board, "p", clock)).state == "closed"
    await fail(board, "p")
    assert (await view_of(board, "p", clock)).state == "open"


async def test_open_breaker_is_skipped_until_recovery(board: BreakerBoard, clock: FakeClock) -> None:
    opened = await open_breaker(board, "a", clock)
    assert opened.opened_at is not None
    clock.now = opened.opened_at + CONFIG.recovery_s - 1 - CONFIG.cache_ttl_s
    view = await view_of(board, "a", clock)  # one second before recovery
    assert view.state == "open"
    assert await board.admit("a", view) is False


async def test_after_recovery_exactly_one_probe_is_admitted(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, "p", clock)
    clock.advance(CONFIG.recovery_s)
    other = BreakerBoard(store, CONFIG, clock=clock)  # another copy of the function
    admitted: list[bool] = []

    async def try_admit(b: BreakerBoard) -> None:
        view = (await b.snapshot(["p"]))["p"]
        assert view.state == "half_open"
        admitted.append(await b.admit("p", view))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(try_admit, board if i % 2 else other)
    assert admitted.count(True) == 1
    assert len(admitted) == 20


async def test_probe_success_closes_and_resets_the_count(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, "p", clock)
    clock.advance(CONFIG.recovery_s)
    view = await view_of(board, "p", clock)
    assert await board.admit("p", view) is True
    await board.record_success("p", view)

    assert (await board.snapshot(["p"]))["p"] == CLOSED  # visible at once to this process
    fresh = await view_of(board, "p", clock)
    assert fresh == CLOSED
    await fail(board, "p", CONFIG.failure_threshold - 1)  # the old window's failures are gone
    assert (await view_of(board, "p", clock)).state == "closed"


async def test_probe_failure_reopens_for_a_new_recovery_period(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, "p", clock)
    clock.advance(CONFIG.recovery_s)
    view = await view_of(board, "p", clock)
    assert await board.admit("p", view) is True
    reopened_at = clock.now
    await board.record_failure("p", view)

    view = await view_of(board, "p", clock)
    assert (view.state, view.opened_at, view.last_failure_at) == ("open", reopened_at, reopened_at)
    assert await board.admit("p", view) is False
    clock.now = reopened_at + CONFIG.recovery_for(1)  # the new period: longer (test_adaptive.py)
    view = await view_of(board, "p", clock)
    assert await board.admit("p", view) is True  # the failed probe released its lease


async def test_a_crashed_probe_frees_its_lease_after_the_lease_time(
    board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, "p", clock)
    clock.advance(CONFIG.recovery_s)
    view = await view_of(board, "p", clock)
    assert await board.admit("p", view) is True  # ...and this probe never reports back
    assert await board.admit("p", view) is False
    clock.advance(CONFIG.probe_lease_s)
    assert await board.admit("p", view) is True


async def test_a_slow_probe_does_not_release_its_successors_lease(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    await open_breaker(board, "p", clock)
    clock.advance(CONFIG.recovery_s)
    view = await view_of(board, "p", clock)
    other = BreakerBoard(store, CONFIG, clock=clock)
    assert await board.admit("p", view) is True
    clock.advance(CONFIG.probe_lease_s)  # the first probe outlives its lease
    assert await other.admit("p", view) is True
    successor_lease = await store.get("breaker:p!probe")
    await board.record_failure("p", view)  # the first probe finally fails: re-open + "release"
    assert await store.get("breaker:p!probe") == successor_lease  # not freed by the slow probe
    assert await BreakerBoard(store, CONFIG, clock=clock).admit("p", view) is False


# --- the hot path -----------------------------------------------------------------------


async def test_snapshot_is_one_read_and_then_served_from_cache(
    store: Counting, board: BreakerBoard, clock: FakeClock
) -> None:
    keys = ["provider:openai", "provider:anthropic", "model:gpt-4o", "model:claude"]
    await board.snapshot(keys)
    assert store.calls == {"get_many": 1}
    for _ in range(100):
        clock.advance(0.009)
        await board.snapshot(keys)
    assert store.calls == {"get_many": 1}
    clock.advance(0.2)  # now past cache_ttl_s
    await board.snapshot(keys)
    assert store.calls == {"get_many": 2}


async def test_concurrent_cold_snapshots_share_one_read(store: Counting, board: BreakerBoard) -> None:
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(board.snapshot, ["a", "b"])
    assert store.calls == {"get_many": 1}


async def test_cache_can_be_disabled(store: Counting, clock: FakeClock) -> None:
    board = BreakerBoard(store, BreakerConfig(cache_ttl_s=0), clock=clock)
    await board.snapshot(["a"])
    await board.snapshot(["a"])
    assert store.calls == {"get_many": 2}


async def test_success_on_a_closed_breaker_writes_nothing(store: Counting, board: BreakerBoard) -> None:
    views = await board.snapshot(["a"])
    for _ in range(10):
        assert await board.admit("a", views["a"]) is True
        await board.record_success("a", views["a"])
    assert store.writes == 0


async def test_failures_write_only_a_counter_until_the_threshold(
    store: Counting, board: BreakerBoard
) -> None:
    await fail(board, "a", CONFIG.failure_threshold - 1)
    assert store.calls.get("add") == CONFIG.failure_threshold - 1
    assert store.writes == CONFIG.failure_threshold - 1


# --- least recently failed ----------------------------------------------------------------


async def test_least_recently_failed(board: BreakerBoard, clock: FakeClock) -> None:
    await open_breaker(board, "a", clock)
    clock.advance(5)
    await open_breaker(board, "b", clock)
    views = await board.snapshot(["b", "a", "never"])
    assert least_recently_failed(["b", "a"], views) == "a"
    assert least_recently_failed(["b", "a", "never"], views) == "never"  # never failed: first
    assert least_recently_failed(["x", "y"], {}) == "x"  # ties: the caller's order


# --- store failures ---------------------------------------------------------------------


async def test_store_down_fails_open_and_logs_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = Broken()
    board = BreakerBoard(store, CONFIG, clock=clock)
    open_view = BreakerView("open", opened_at=clock.now - 1, last_failure_at=clock.now - 1)
    with caplog.at_level(logging.WARNING, logger="tier_router.breakers"):
        for _ in range(5):
            clock.advance(CONFIG.cache_ttl_s)
            views = await board.snapshot(["a", "b"])
            assert views == {"a": CLOSED, "b": CLOSED}
            assert await board.admit("a", views["a"]) is True
            await board.record_failure("a", views["a"])
        clock.advance(CONFIG.recovery_s)
        assert await board.admit("a", open_view) is True  # the lease write failed: let it through
    assert store.calls["get_many"] == 5  # still one read per cache period, not per request
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "treating breakers as closed" in warnings[0].getMessage()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError, match="positive"):
        BreakerConfig(recovery_s=0)


# --- shared through SQLite --------------------------------------------------------------


@pytest.fixture
async def sqlite_pair(tmp_path: Path, clock: FakeClock) -> AsyncIterator[tuple[BreakerBoard, BreakerBoard]]:
    """Two boards, each with its own SQLiteStore on one file: two processes' worth of state."""
    a, b = SQLiteStore(tmp_path / "state.db", clock=clock), SQLiteStore(tmp_path / "state.db", clock=clock)
    yield BreakerBoard(a, CONFIG, clock=clock), BreakerBoard(b, CONFIG, clock=clock)
    await a.aclose()
    await b.aclose()


async def test_breakers_are_shared_between_boards_via_sqlite(
    sqlite_pair: tuple[BreakerBoard, BreakerBoard], clock: FakeClock
) -> None:
    first, second = sqlite_pair
    assert (await second.snapshot(["p"]))["p"] == CLOSED
    await fail(first, "p", 2)
    await fail(second, "p", 1)  # failures from both copies add up...
    clock.advance(CONFIG.cache_ttl_s)
    assert (await second.snapshot(["p"]))["p"].state == "open"  # ...and both see the result
    assert (await first.snapshot(["p"]))["p"].state == "open"

    clock.advance(CONFIG.recovery_s)
    views = [(await b.snapshot(["p"]))["p"] for b in (first, second)]
    results = [await first.admit("p", views[0]), await second.admit("p", views[1])]
    assert sorted(results) == [False, True]  # one probe across both copies
    prober, view = (first, views[0]) if results[0] else (second, views[1])
    await prober.record_success("p", view)
    clock.advance(CONFIG.cache_ttl_s)
    assert (await first.snapshot(["p"]))["p"] == CLOSED
    assert (await second.snapshot(["p"]))["p"] == CLOSED


async def test_open_state_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = SQLiteStore(tmp_path / "state.db", clock=clock)
    board = BreakerBoard(store, CONFIG, clock=clock)
    await fail(board, "p", CONFIG.failure_threshold)
    opened_at = clock.now
    await store.aclose()

    restarted = SQLiteStore(tmp_path / "state.db", clock=clock)  # new process, same file
    view = (await BreakerBoard(restarted, CONFIG, clock=clock).snapshot(["p"]))["p"]
    await restarted.aclose()
    assert (view.state, view.opened_at) == ("open", opened_at)
