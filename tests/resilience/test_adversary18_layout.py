"""Adversary against the day's layout (`spend.layout`, issue 18): two routers configured with
different `budgets.shards` share one store (a mid-day rules change, or two versions serving at
once during a deploy) and start the day together — 60 requests against room for a few, writes
that land and THEN report a timeout (the layout's pin among them) — on one in-memory store, two
SQLite stores on one file (two processes) and two DynamoDB clients on one moto table; and the
same on the upgrade day, with spend a router before issue 18 left in `budget:<day>` items.

The promises: one layout is pinned and both routers use it; with `reject`, committed (summed
over the pinned shards, plus what the pin carried from the legacy items) never passes the cap,
not even briefly, and each admitted request is counted exactly once; with `allow`, the cap is
passed by at most the uncounted requests' costs (`spend.budget`'s documented exception). On the
code before the pin, each router enforced the cap on its own items: up to two caps admitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.lowlevel
import pytest
from tier_router.spend.budget import BudgetGuard
from tier_router.spend.shards import summed
from tier_router.store.base import Scalar, Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.resilience.test_adversary18_shards import (  # noqa: F401 - fast_retries: a fixture
    CAPS,
    DAY,
    NOON,
    REQUESTS,
    WORST,
    LandsThenTimesOut,
    config,
    fast_retries,
    load,
)
from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio

LEGACY = 2 * WORST
"""Committed by a router before issue 18 on the upgrade day, before the deploy."""


class PinLandsThenTimesOut(LandsThenTimesOut):
    """Also the layout's pin: it lands, and its answer is lost (the first one of each store)."""

    pins_lost = 0

    async def put_if(self, key: str, value: Mapping[str, Scalar], **options: Any) -> bool:
        landed = await self.inner.put_if(key, value, **options)
        await anyio.lowlevel.checkpoint()
        if not self.pins_lost:
            self.pins_lost += 1
            raise StoreUnavailable("pin landed (or not), then timed out (test)")
        return landed


async def legacy_day(store: Store, kind: str) -> None:
    """What a router before issue 18 left: the scope's budget item, and the ledger's item."""
    if kind == "global":
        await store.add(f"budget:{DAY}", {"committed": LEGACY, "spent": LEGACY})
    else:
        await store.add(f"budget:{DAY}:key:k", {"committed": LEGACY, "spent": LEGACY})
    await store.add(f"spend:{DAY}", {"total": LEGACY, "requests": 2, "key.k": LEGACY, "key_n.k": 2})


def stores_for(request: pytest.FixtureRequest, backend: str, tmp_path: Path, clock: FakeClock) -> list[Store]:
    if backend == "memory":
        one = MemoryStore(clock=clock)
        return [one, one]
    if backend == "dynamodb":  # two clients (two processes) on one table
        from tier_router.store.dynamodb import DynamoDBStore

        request.getfixturevalue("aws_env")
        moto = request.getfixturevalue("moto")
        table = request.getfixturevalue("table")
        return [DynamoDBStore(table, endpoint=moto.endpoint, clock=clock, timeout_s=30.0) for _ in range(2)]
    return [SQLiteStore(tmp_path / "shared.db", clock=clock) for _ in range(2)]


LOCAL = [(b, c) for b in ("memory", "sqlite-two-processes") for c in ((1, 4), (4, 2), (2, 1))]
MOTO = [pytest.param("dynamodb", (1, 4), marks=pytest.mark.integration)]


@pytest.mark.parametrize(("backend", "counts"), [*LOCAL, *MOTO])
@pytest.mark.parametrize("upgrade", [False, True], ids=["same-version", "upgrade-day"])
@pytest.mark.parametrize("mode", ["reject", "allow"])
@pytest.mark.parametrize("kind", ["global", "key"])
@pytest.mark.usefixtures("fast_retries")
async def test_routers_with_different_shard_counts_hold_one_cap(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: str,
    counts: tuple[int, int],
    upgrade: bool,
    mode: str,
    kind: str,
) -> None:
    clock = FakeClock()
    clock.now = NOON
    cap = 4 * WORST  # room for 4 (or 2 after the legacy spend), whichever count is pinned
    inner = stores_for(request, backend, tmp_path, clock)
    if upgrade:
        await legacy_day(inner[0], kind)
    stores = [PinLandsThenTimesOut(s, seed=sum(counts) * 31 + i) for i, s in enumerate(inner)]
    guards = [
        BudgetGuard(s, config(kind, cap, n, mode), clock=clock)  # type: ignore[arg-type]
        for s, n in zip(stores, counts, strict=True)
    ]
    _, committed, spent = CAPS[kind]
    try:
        admitted, uncounted, refused, failed = await load(guards, "k", seed=sum(counts))
        layouts = [await g.layouts.pinned(DAY) for g in guards]
        values = await inner[0].get_many(layouts[0].items)
    finally:
        for s in {id(s): s for s in inner}.values():
            await s.aclose()
    layout = layouts[0]
    carried = layout.carried.get(committed, 0)
    sums = summed(values.values(), [committed, spent])
    holds = [name for value in values.values() for name in value if name.startswith("h.")]

    assert {x.items for x in layouts} == {layout.items}  # one layout, pinned by one of them
    assert layout.shards in counts
    assert sum(s.pins_lost for s in stores) > 0  # the adversary did act
    assert carried == (LEGACY if upgrade else 0)  # carried once, not once per router
    assert len(admitted) + refused + failed == REQUESTS
    assert holds == []
    assert sums[committed] == sums[spent]
    peaks: dict[str, int] = {}
    for s in stores:
        for name, value in s.peaks.items():
            peaks[name] = max(peaks.get(name, value), value)
    peak = sum(v for name, v in peaks.items() if name.endswith(f" {committed}"))
    if mode == "reject":
        assert uncounted == []
        assert sums[spent] == sum(admitted)  # each request counted exactly once
        assert carried + peak <= cap  # never above the cap, not even briefly
    else:
        assert sum(admitted) - sum(uncounted) <= sums[spent] <= sum(admitted)
        assert carried + sums[spent] <= cap + sum(uncounted)
