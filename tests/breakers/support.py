"""Helpers for the breaker tests: counting and broken stores, and steps that open breakers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio.lowlevel
from tier_router.breakers import BreakerBoard, BreakerConfig, BreakerView
from tier_router.store.base import Scalar, Store, StoreUnavailable, Value
from tier_router.store.memory import MemoryStore

from tests.store.support import FakeClock

CONFIG = BreakerConfig(failure_threshold=3, window_s=30, recovery_s=20, probe_lease_s=10, cache_ttl_s=1.0)


class CountingStore:
    """Wraps a store and counts calls per method (reads vs writes on the hot path)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name in {"put", "add", "put_if", "delete"})

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self._count("get_many")
        await anyio.lowlevel.checkpoint()  # let concurrent callers pile up, as a real round trip would
        return await self.inner.get_many(keys)

    async def get(self, key: str) -> Value | None:
        self._count("get")
        return await self.inner.get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], **kw: Any) -> None:
        self._count("put")
        await self.inner.put(key, value, **kw)

    async def add(self, key: str, deltas: Mapping[str, int], **kw: Any) -> dict[str, int] | None:
        self._count("add")
        return await self.inner.add(key, deltas, **kw)

    async def put_if(self, key: str, value: Mapping[str, Scalar], **kw: Any) -> bool:
        self._count("put_if")
        return await self.inner.put_if(key, value, **kw)

    async def delete(self, key: str) -> None:
        self._count("delete")
        await self.inner.delete(key)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


class BrokenStore(CountingStore):
    """Every call fails as an unreachable store would."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self._count("get_many")
        raise StoreUnavailable("DynamoDB unreachable")

    async def add(self, key: str, deltas: Mapping[str, int], **kw: Any) -> dict[str, int] | None:
        raise StoreUnavailable("DynamoDB unreachable")

    async def put_if(self, key: str, value: Mapping[str, Scalar], **kw: Any) -> bool:
        raise StoreUnavailable("DynamoDB unreachable")


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
