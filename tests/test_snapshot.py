"""The TTL single-flight snapshot that breakers and budget pacing read shared state through."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from tier_router.snapshot import Snapshot

from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Source:
    """A fetch that counts its calls and, when `gate` is set, waits for it (a slow store)."""

    def __init__(self, values: Mapping[str, int] | None = None) -> None:
        self.values = dict(values or {})
        self.calls: list[list[str]] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, keys: list[str], now: float) -> dict[str, int]:
        self.calls.append(keys)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {k: self.values[k] for k in keys if k in self.values}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_values_are_fresh_for_the_ttl(clock: FakeClock) -> None:
    source = Source({"a": 1, "b": 2})
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    assert await snap.read(["a", "b", "missing"]) == {"a": 1, "b": 2}
    source.values["a"] = 10
    clock.advance(0.99)
    assert await snap.read(["a"]) == {"a": 1}  # fresh: no fetch
    clock.advance(0.01)
    assert await snap.read(["a", "b"]) == {"a": 10, "b": 2}
    # only stale keys are fetched; a key the fetch did not return stays unknown (asked again)
    assert source.calls == [["a", "b", "missing"], ["a", "b"]]
    assert await snap.read(["missing"]) == {}
    assert source.calls[-1] == ["missing"]


async def test_a_zero_ttl_fetches_every_time(clock: FakeClock) -> None:
    source = Source({"a": 1})
    snap = Snapshot(source, ttl_s=0, clock=clock)
    await snap.read(["a"])
    await snap.read(["a"])
    assert len(source.calls) == 2


async def test_concurrent_readers_share_one_fetch(clock: FakeClock) -> None:
    source = Source({"a": 1, "b": 2, "c": 3})
    source.gate = asyncio.Event()
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    readers = [asyncio.ensure_future(snap.read(["a", "b"])) for _ in range(50)]
    await source.started.wait()
    overlapping = asyncio.ensure_future(snap.read(["b", "c"]))  # waits for b, fetches only c
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*readers) == [{"a": 1, "b": 2}] * 50
    assert await overlapping == {"b": 2, "c": 3}
    assert source.calls == [["a", "b"], ["c"]]


async def test_a_failing_fetch_fails_every_waiter_and_stores_nothing(clock: FakeClock) -> None:
    source = Source({"a": 1})
    source.gate, source.error = asyncio.Event(), RuntimeError("store bug")
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    readers = [asyncio.ensure_future(snap.read(["a"])) for _ in range(3)]
    await source.started.wait()
    source.gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert len(source.calls) == 1
    assert snap.get("a") is None
    source.gate, source.error = None, None
    assert await snap.read(["a"]) == {"a": 1}  # the next read tries again
    assert len(source.calls) == 2


async def test_a_cancelled_reader_does_not_cancel_the_shared_fetch(clock: FakeClock) -> None:
    source = Source({"a": 1})
    source.gate = asyncio.Event()
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    first = asyncio.ensure_future(snap.read(["a"]))  # starts the fetch...
    await source.started.wait()
    second = asyncio.ensure_future(snap.read(["a"]))  # ...which this one joins
    await asyncio.sleep(0)
    first.cancel()  # its client went away
    await asyncio.sleep(0)
    source.gate.set()
    assert await second == {"a": 1}
    assert first.cancelled()
    assert len(source.calls) == 1


async def test_a_fetch_every_reader_left_still_lands_and_is_used(clock: FakeClock) -> None:
    source = Source({"a": 1})
    source.gate = asyncio.Event()
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    only = asyncio.ensure_future(snap.read(["a"]))
    await source.started.wait()
    only.cancel()
    await asyncio.sleep(0)
    source.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert snap.get("a") == 1
    assert await snap.read(["a"]) == {"a": 1}
    assert len(source.calls) == 1


async def test_own_writes(clock: FakeClock) -> None:
    source = Source({"a": 1})
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    await snap.read(["a"])
    clock.advance(0.5)
    snap.amend("a", 2)  # part of the value changed: it keeps its age
    assert await snap.read(["a"]) == {"a": 2}
    clock.advance(0.5)
    assert await snap.read(["a"]) == {"a": 1}  # refreshed on schedule
    clock.advance(0.5)
    snap.set("a", 3)  # a whole fresh value: as good as a read now
    clock.advance(0.9)
    assert await snap.read(["a"]) == {"a": 3}
    snap.discard("a")
    assert await snap.read(["a"]) == {"a": 1}
    snap.amend("new", 7)  # never seen: fresh from now
    assert await snap.read(["new"]) == {"new": 7}
    assert len(source.calls) == 3


async def test_a_write_during_a_fetch_is_not_overwritten_by_it(clock: FakeClock) -> None:
    source = Source({"a": 1})
    source.gate = asyncio.Event()
    snap = Snapshot(source, ttl_s=1.0, clock=clock)
    reader = asyncio.ensure_future(snap.read(["a"]))
    await source.started.wait()
    clock.advance(0.1)
    snap.set("a", 5)  # our own write, after the fetch began
    source.gate.set()
    assert await reader == {"a": 5}


async def test_old_entries_are_pruned_past_max_entries(clock: FakeClock) -> None:
    source = Source({f"k{i}": i for i in range(10)})
    snap = Snapshot(source, ttl_s=1.0, clock=clock, max_entries=4)
    await snap.read([f"k{i}" for i in range(5)])
    clock.advance(2)
    await snap.read(["k9"])  # past the bound: the stale five go
    assert len(snap) == 1
    await snap.read(["k8"])
    assert len(snap) == 2
