"""Store wrappers for the spend tests: observe writes, slow them down, or fail them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import anyio
from tier_router.store.base import Scalar, Store, StoreUnavailable, Value


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: float = 0) -> float:
    """Unix seconds for a UTC wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() + second


class Wrapped:
    """Delegates every `Store` call; subclasses override what they watch."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        return await self.inner.get_many(keys)

    async def get(self, key: str) -> Value | None:
        return await self.inner.get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        await self.inner.put(key, value, expires_at=expires_at)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        return await self.inner.add(key, deltas, expires_at=expires_at, limits=limits)

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        return await self.inner.put_if(key, value, expected=expected, expires_at=expires_at)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Observing(Wrapped):
    """Remembers the highest value every added field ever reached, and counts calls."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.peak: dict[tuple[str, str], int] = {}
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self._count("get_many")
        return await super().get_many(keys)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        self._count("add")
        new = await super().add(key, deltas, expires_at=expires_at, limits=limits)
        for name, value in (new or {}).items():
            self.peak[key, name] = max(self.peak.get((key, name), value), value)
        return new


class Watched(Wrapped):
    """Lets a test wait for writes made in the background (a settle that outlived its
    cancelled caller): `await store.until(key, {"committed": 0})`."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.latest: dict[str, dict[str, int]] = {}  # what each item's last add returned
        self._added = asyncio.Condition()

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        new = await super().add(key, deltas, expires_at=expires_at, limits=limits)
        if new is not None:
            async with self._added:
                self.latest[key] = new
                self._added.notify_all()
        return new

    async def until(self, key: str, fields: Mapping[str, int], timeout_s: float = 5.0) -> None:
        """Return once an add on `key` has left these field values (fail after `timeout_s`)."""

        def reached() -> bool:
            latest = self.latest.get(key, {})
            return all(latest.get(name) == value for name, value in fields.items())

        with anyio.fail_after(timeout_s):
            async with self._added:
                await self._added.wait_for(reached)


class Slow(Wrapped):
    """Every add takes `delay` seconds (a point where callers can be cancelled)."""

    def __init__(self, inner: Store, delay: float = 0.05) -> None:
        super().__init__(inner)
        self.delay = delay

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        await anyio.sleep(self.delay)
        return await super().add(key, deltas, expires_at=expires_at, limits=limits)


class Failing(Wrapped):
    """Raises StoreUnavailable on every call while `down`, and on the adds whose 1-based
    ordinal is in `fail_adds`."""

    def __init__(self, inner: Store, *, down: bool = True, fail_adds: set[int] | None = None) -> None:
        super().__init__(inner)
        self.down = down
        self.fail_adds = fail_adds or set()
        self.adds = 0
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("store is down (test)")

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self._maybe_fail()
        return await super().get_many(keys)

    async def get(self, key: str) -> Value | None:
        self._maybe_fail()
        return await super().get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        self._maybe_fail()
        await super().put(key, value, expires_at=expires_at)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        self.adds += 1
        if self.adds in self.fail_adds:
            raise StoreUnavailable("outcome unknown (test)")
        self._maybe_fail()
        return await super().add(key, deltas, expires_at=expires_at, limits=limits)
