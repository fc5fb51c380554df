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
