"""Adversary against the sharded day items (issue 18): concurrent requests at a cap with room for
one per shard, with writes that land and THEN report a timeout (the client cannot tell a landed
reservation from a lost one), over 1, 2, 4 and 7 shards, with `on_store_error: reject` and
`allow`, on one in-memory store and on two SQLite stores sharing one file (two processes).

The promises (`spend.budget`, `spend.shards`, `spend.holds`):
- with `reject`, committed, summed over the shards, never passes the cap, not even briefly;
  with `allow`, a reservation whose answer timed out is served whether it landed or was refused
  (the client cannot tell), and its settle charges its actual cost: the cap is passed by at
  most the uncounted requests' costs (the documented exception — a test artefact, not a bug,
  when a moto ReadTimeout made `test_concurrent_requests_never_exceed_the_cap[dynamodb-key-cap]`
  end $0.47 over: that test runs with the default, `allow`);
- once every background write has run, no hold is left and each scope's committed == spent ==
  the sum of the admitted requests' actual costs (each request counted exactly once), except
  for `allow`'s uncounted requests, counted at most once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend import holds as holds_module
from tier_router.spend.budget import BudgetGuard, CapReached
from tier_router.spend.shards import day_items, summed
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio

NOON = at(2026, 11, 23, 12)
DAY = "2026-11-23"
USD = 1_000_000
WORST = USD // 4
REQUESTS = 60


class LandsThenTimesOut(Wrapped):
    """Every add reaches the inner store; a seeded share of them then reports a timeout."""

    def __init__(self, inner: Store, seed: int, share: float = 0.3) -> None:
        super().__init__(inner)
        self.rng = random.Random(seed)
        self.share = share
        self.peaks: dict[str, int] = {}
        self.timeouts = 0

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        new = await self.inner.add(key, deltas, **options)
        for name, value in (new or {}).items():
            if name == "committed" or name.startswith("kc."):
                self.peaks[f"{key} {name}"] = max(self.peaks.get(f"{key} {name}", value), value)
        await anyio.lowlevel.checkpoint()
        if self.rng.random() < self.share:
            self.timeouts += 1
            raise StoreUnavailable("landed, then timed out (test)")
        return new


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(holds_module, "SETTLE_BACKOFF_S", (0.0, 0.0))


async def drain(guards: list[BudgetGuard]) -> None:
    """Every background write (rollbacks, settles, reclaims) has finished."""
    for _ in range(100):
        tasks = [t for g in guards for t in g._tasks]
        if not tasks:
            return
        await asyncio.gather(*tasks, return_exceptions=True)
    raise AssertionError("background writes kept spawning")


async def load(guards: list[BudgetGuard], key: str, seed: int) -> tuple[list[int], list[int], int, int]:
    """REQUESTS at once: reserve WORST, settle a cost in [WORST/2, WORST]. Returns the admitted
    requests' costs, those of the admitted ones whose reservation was uncounted (`allow`), the
    refused and the failed (`reject`)."""
    rng = random.Random(seed)
    admitted: list[int] = []
    uncounted: list[int] = []
    refused = failed = 0

    async def one(i: int, actual: int) -> None:
        nonlocal refused, failed
        guard = guards[i % len(guards)]
        try:
            held = await guard.reserve(key, WORST, holder=f"r{i}")
        except StoreUnavailable:
            failed += 1
            return
        if isinstance(held, CapReached):
            refused += 1
            return
        try:
            await anyio.sleep(rng.uniform(0, 0.002))
        finally:
            await guard.settle(held, actual)
        admitted.append(actual)
        if held.uncounted:
            uncounted.append(actual)

    async with anyio.create_task_group() as tg:
        for i in range(REQUESTS):
            tg.start_soon(one, i, rng.randint(WORST // 2, WORST))
    await drain(guards)
    return admitted, uncounted, refused, failed


CAPS = {
    "global": ({"daily_usd": 0.0}, "committed", "spent"),
    "key": ({"daily_usd": 1000.0, "per_key_daily_usd": 0.0}, "kc.k", "ks.k"),
}


def config(kind: str, cap: int, shards: int, mode: str) -> BudgetConfig:
    base, _, _ = CAPS[kind]
    usd = cap / USD
    values = {name: (usd if value == 0.0 else value) for name, value in base.items()}
    return BudgetConfig(**values, shards=shards, on_store_error=mode)


LOCAL = [(b, n) for b in ("memory", "sqlite-two-processes") for n in (1, 2, 4, 7)]
MOTO = [pytest.param("dynamodb", n, marks=pytest.mark.integration) for n in (1, 4)]  # one request at a time


@pytest.mark.parametrize(("backend", "shards"), [*LOCAL, *MOTO])
@pytest.mark.parametrize("mode", ["reject", "allow"])
@pytest.mark.parametrize("kind", ["global", "key"])
async def test_sharded_cap_holds_when_writes_land_then_time_out(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    backend: str,
    kind: str,
    mode: str,
    shards: int,
    fast_retries: None,
) -> None:
    clock = FakeClock()
    clock.now = NOON
    cap = shards * WORST  # room for exactly one worst case per shard
    inner: list[Store]
    if backend == "memory":
        inner = [MemoryStore(clock=clock)]
    elif backend == "dynamodb":  # moto: two stores (two processes) on one table
        from tier_router.store.dynamodb import DynamoDBStore

        request.getfixturevalue("aws_env")
        moto = request.getfixturevalue("moto")
        table = request.getfixturevalue("table")
        inner = [DynamoDBStore(table, endpoint=moto.endpoint, clock=clock, timeout_s=30.0) for _ in range(2)]
    else:
        inner = [SQLiteStore(tmp_path / "shared.db", clock=clock) for _ in range(2)]
    stores = [LandsThenTimesOut(s, seed=shards * 31 + i) for i, s in enumerate(inner)]
    guards = [BudgetGuard(s, config(kind, cap, shards, mode), clock=clock) for s in stores]  # type: ignore[arg-type]
    _, committed, spent = CAPS[kind]
    try:
        admitted, uncounted, refused, failed = await load(guards, "k", seed=shards)
        items = day_items("spend:", DAY, shards)
        values = await inner[0].get_many(items)
    finally:
        for s in inner:
            await s.aclose()
    sums = summed(values.values(), [committed, spent])
    holds = [name for value in values.values() for name in value if name.startswith("h.")]

    assert sum(s.timeouts for s in stores) > 0  # the adversary did act
    assert len(admitted) + refused + failed == REQUESTS
    assert holds == []  # every hold settled or rolled back
    assert sums[committed] == sums[spent]
    peaks: dict[str, int] = {}
    for s in stores:
        for name, value in s.peaks.items():
            peaks[name] = max(peaks.get(name, value), value)
    peak = sum(v for name, v in peaks.items() if name.endswith(f" {committed}"))
    if mode == "reject":  # never above the cap, not even briefly (each shard under its share)
        assert uncounted == []
        assert peak <= cap
        assert sums[spent] == sum(admitted) <= cap  # each request counted exactly once
    else:  # the documented exception: a timed-out reservation (landed or refused) is served
        assert uncounted  # and its settle charges what it cost, cap or not
        # Counted reservations: exactly once. Uncounted ones: at most once (a settle whose every
        # answer was lost may not have reached its charging write).
        assert sum(admitted) - sum(uncounted) <= sums[spent] <= sum(admitted)
        assert sums[spent] <= cap + sum(uncounted)


@pytest.mark.parametrize("shards", [2, 4, 7])
@pytest.mark.parametrize("backend", ["memory", "sqlite-two-processes"])
async def test_key_caps_and_the_global_cap_both_near_full_on_different_shards(
    tmp_path: Path, backend: str, shards: int, fast_retries: None
) -> None:
    """Three keys, each with a cap for 2 worst cases per shard, and a global cap for 4 per shard
    (less than the keys' together): whichever binds, on whatever shard each request lands, no
    scope passes its cap, with `reject` and writes that land then time out."""
    clock = FakeClock()
    clock.now = NOON
    key_cap, global_cap = 2 * shards * WORST, 4 * shards * WORST
    budgets = BudgetConfig(
        daily_usd=global_cap / USD, per_key_daily_usd=key_cap / USD, shards=shards, on_store_error="reject"
    )
    inner: list[Store]
    if backend == "memory":
        inner = [MemoryStore(clock=clock)]
    else:
        inner = [SQLiteStore(tmp_path / "shared.db", clock=clock) for _ in range(2)]
    stores = [LandsThenTimesOut(s, seed=shards * 17 + i, share=0.2) for i, s in enumerate(inner)]
    guards = [BudgetGuard(s, budgets, clock=clock) for s in stores]  # type: ignore[arg-type]
    served: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    rng = random.Random(shards)

    async def one(i: int, key: str, actual: int) -> None:
        guard = guards[i % len(guards)]
        try:
            held = await guard.reserve(key, WORST, holder=f"{key}{i}")
        except StoreUnavailable:
            return
        if isinstance(held, CapReached):
            return
        try:
            await anyio.sleep(rng.uniform(0, 0.002))
        finally:
            await guard.settle(held, actual)
        served[key].append(actual)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(90):
                tg.start_soon(one, i, "abc"[i % 3], rng.randint(WORST * 3 // 4, WORST))
        await drain(guards)
        values = await inner[0].get_many(day_items("spend:", DAY, shards))
    finally:
        for s in inner:
            await s.aclose()
    fields = ["committed", "spent"] + [f"{p}.{k}" for k in served for p in ("kc", "ks")]
    sums = summed(values.values(), fields)
    peaks: dict[str, int] = {}
    for s in stores:
        for name, value in s.peaks.items():
            peaks[name] = max(peaks.get(name, value), value)

    assert not [n for v in values.values() for n in v if n.startswith("h.")]
    assert sums["committed"] == sums["spent"] == sum(map(sum, served.values())) <= global_cap
    assert sum(v for n, v in peaks.items() if n.endswith(" committed")) <= global_cap
    for key, costs in served.items():
        assert sums[f"kc.{key}"] == sums[f"ks.{key}"] == sum(costs) <= key_cap
        assert sum(v for n, v in peaks.items() if n.endswith(f" kc.{key}")) <= key_cap
    assert sum(len(c) for c in served.values()) >= 2  # something was served
