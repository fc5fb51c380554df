"""Store wrappers: watch a real store's calls, slow them down, or fail them.

`Wrapped` delegates the whole `Store` interface to `inner` (keyword options passed through as
they are) and calls `before(name)` first on every call but `aclose`; each wrapper below is
that hook (plus an override where it needs the call's result).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from tier_router.store.base import Scalar, Store, StoreUnavailable, Value
from tier_router.store.memory import MemoryStore

WRITES = frozenset({"put", "add", "put_if", "delete"})


class Wrapped:
    """Delegates every `Store` call to `inner`, after `before(method name)`."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    async def before(self, name: str) -> None:
        """Runs before every call but `aclose` (the hook subclasses override)."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        await self.before("get_many")
        return await self.inner.get_many(keys)

    async def get(self, key: str) -> Value | None:
        await self.before("get")
        return await self.inner.get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], **options: Any) -> None:
        await self.before("put")
        await self.inner.put(key, value, **options)

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        await self.before("add")
        return await self.inner.add(key, deltas, **options)

    async def put_if(self, key: str, value: Mapping[str, Scalar], **options: Any) -> bool:
        await self.before("put_if")
        return await self.inner.put_if(key, value, **options)

    async def delete(self, key: str) -> None:
        await self.before("delete")
        await self.inner.delete(key)

    async def ping(self) -> None:
        await self.before("ping")
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counting(Wrapped):
    """Counts calls per method (every method but `ping`), and `writes` among them.

    `pile_up`: every `get_many` first yields to the event loop, so concurrent callers pile up
    as they would behind a real round trip."""

    counted = frozenset({"get_many", "get", *WRITES})

    def __init__(self, inner: Store, *, pile_up: bool = False) -> None:
        super().__init__(inner)
        self.pile_up = pile_up
        self.calls: Counter[str] = Counter()

    async def before(self, name: str) -> None:
        if name in self.counted:
            self.calls[name] += 1
        if self.pile_up and name == "get_many":
            await anyio.lowlevel.checkpoint()

    @property
    def writes(self) -> int:
        return sum(n for name, n in self.calls.items() if name in WRITES)


class Broken(Counting):
    """Every read and conditional write fails as an unreachable store would (reads counted)."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())

    async def before(self, name: str) -> None:
        if name == "get_many":
            self.calls[name] += 1
        if name in ("get_many", "add", "put_if"):
            raise StoreUnavailable("DynamoDB unreachable")
        await super().before(name)


class Faulty(Counting):
    """A `MemoryStore` unless told to misbehave. `mode`: "ok" | "down" (every call raises
    `StoreUnavailable`) | "slow" (every call first sleeps `delay_s`). Every call is counted."""

    counted = frozenset({*Counting.counted, "ping"})

    def __init__(self, mode: str = "ok", delay_s: float = 0.3) -> None:
        super().__init__(MemoryStore())
        self.mode = mode
        self.delay_s = delay_s

    async def before(self, name: str) -> None:
        await super().before(name)
        if self.mode == "down":
            raise StoreUnavailable(f"injected outage ({name})")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)


class Observing(Counting):
    """Counts reads and adds, and remembers the highest value every added field ever reached."""

    counted = frozenset({"get_many", "add"})

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.peak: dict[tuple[str, str], int] = {}

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        new = await super().add(key, deltas, **options)
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

    async def add(self, key: str, deltas: Mapping[str, int], **options: Any) -> dict[str, int] | None:
        new = await super().add(key, deltas, **options)
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

    async def before(self, name: str) -> None:
        if name == "add":
            await anyio.sleep(self.delay)


class Failing(Wrapped):
    """Raises StoreUnavailable on every read, put and add while `down`, and on the adds whose
    1-based ordinal is in `fail_adds`."""

    def __init__(self, inner: Store, *, down: bool = True, fail_adds: set[int] | None = None) -> None:
        super().__init__(inner)
        self.down = down
        self.fail_adds = fail_adds or set()
        self.adds = 0
        self.calls = 0

    async def before(self, name: str) -> None:
        if name == "add":
            self.adds += 1
            if self.adds in self.fail_adds:
                raise StoreUnavailable("outcome unknown (test)")
        if name in ("get_many", "get", "put", "add"):
            self.calls += 1
            if self.down:
                raise StoreUnavailable("store is down (test)")
