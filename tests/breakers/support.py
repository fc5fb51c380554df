"""Helpers for the breaker tests: one configuration, and the steps that open a breaker."""

from __future__ import annotations

from tier_router.breakers import BreakerBoard, BreakerConfig, BreakerView

from tests.support.clock import FakeClock

CONFIG = BreakerConfig(failure_threshold=3, window_s=30, recovery_s=20, probe_lease_s=10, cache_ttl_s=1.0)


async def view_of(board: BreakerBoard, key: str, clock: FakeClock) -> BreakerView:
    clock.advance(CONFIG.cache_ttl_s)  # step past the snapshot so we see the store
    return (await board.snapshot([key]))[key]


async def fail(board: BreakerBoard, key: str, times: int = 1) -> None:
    for _ in range(times):
        view = (await board.snapshot([key]))[key]
        await board.record_failure(key, view)


async def open_breaker(board: BreakerBoard, key: str, clock: FakeClock) -> BreakerView:
    await fail(board, key, CONFIG.failure_threshold)
    view = await view_of(board, key, clock)
    assert view.state == "open"
    return view
