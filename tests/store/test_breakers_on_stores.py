"""The breaker lifecycle on every store (memory, SQLite, DynamoDB on moto): the probe
lease and the expiry-as-absent rules it relies on hold on the production backend too."""

from __future__ import annotations

import anyio
import pytest
from tier_router.breakers import CLOSED, BreakerBoard, BreakerConfig
from tier_router.store.base import Store

from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

CONFIG = BreakerConfig(failure_threshold=2, window_s=60, recovery_s=10, probe_lease_s=5, cache_ttl_s=0)


async def test_open_probe_close_cycle(store: Store, clock: FakeClock) -> None:
    clock.now = 1_800_000_000.0  # the start of a failure window: the two failures share it
    boards = [BreakerBoard(store, CONFIG, clock=clock) for _ in range(3)]  # three "processes"
    for board in boards[:2]:
        view = (await board.snapshot(["p"]))["p"]
        await board.record_failure("p", view)
    assert (await boards[2].snapshot(["p"]))["p"].state == "open"

    clock.advance(CONFIG.recovery_s)
    views = [(await b.snapshot(["p"]))["p"] for b in boards]
    assert {v.state for v in views} == {"half_open"}
    results: list[bool] = []

    async def admit(i: int) -> None:
        results.append(await boards[i % 3].admit("p", views[i % 3]))

    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(admit, i)
    assert results.count(True) == 1

    clock.advance(CONFIG.probe_lease_s)  # the probe hangs; its lease expires...
    assert await boards[0].admit("p", views[0]) is True  # ...and another caller may probe
    await boards[0].record_success("p", views[0])
    assert [(await b.snapshot(["p"]))["p"] for b in boards] == [CLOSED] * 3


ADAPTIVE = BreakerConfig(
    failure_threshold=3, window_s=60, recovery_s=5, recovery_backoff=2, recovery_max_s=15, cache_ttl_s=0
)


async def test_rolling_window_and_backoff_are_shared(store: Store, clock: FakeClock) -> None:
    """Issue 14 on every backend: failures from two "processes" either side of a bucket edge
    add up; the backed-off recovery period one process wrote is the one the others obey; a
    success closes it for all, and the next opening starts short again."""
    clock.now = 1_800_000_000.0 + ADAPTIVE.window_s - 1  # 1 s before a bucket edge
    one, two = (BreakerBoard(store, ADAPTIVE, clock=clock) for _ in range(2))
    for _ in range(2):
        await one.record_failure("p", (await one.snapshot(["p"]))["p"])
    clock.advance(2)
    for _ in range(2):
        await two.record_failure("p", (await two.snapshot(["p"]))["p"])
    view = (await one.snapshot(["p"]))["p"]
    assert view.state == "open"
    opened_at = view.opened_at
    assert opened_at is not None

    for failed, period in enumerate((5, 10, 15, 15)):  # probes fail: 5 s, then x2 up to 15 s
        prober, other = (one, two) if failed % 2 else (two, one)
        clock.now = opened_at + period - 0.5
        assert (await other.snapshot(["p"]))["p"].state == "open"
        clock.now = opened_at + period
        view = (await prober.snapshot(["p"]))["p"]
        assert (view.state, view.failed_probes) == ("half_open", failed)
        assert await prober.admit("p", view) is True
        assert await other.admit("p", (await other.snapshot(["p"]))["p"]) is False  # one probe
        await prober.record_failure("p", view)
        opened_at = clock.now

    clock.now = opened_at + 15
    view = (await one.snapshot(["p"]))["p"]
    assert await one.admit("p", view) is True
    await one.record_success("p", view)
    assert (await two.snapshot(["p"]))["p"] == CLOSED
    for _ in range(3):
        await two.record_failure("p", (await two.snapshot(["p"]))["p"])
    view = (await one.snapshot(["p"]))["p"]
    assert (view.state, view.failed_probes, view.opened_at) == ("open", 0, clock.now)
    clock.advance(5)
    assert (await one.snapshot(["p"]))["p"].state == "half_open"  # short again
