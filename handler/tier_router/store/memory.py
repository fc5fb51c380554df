"""`memory://` — a dict in this process. For unit tests and single-process dev runs.

State is not shared with other processes and is lost on exit. Every method runs to
completion without awaiting, so on one event loop each call is atomic; a lock still
guards the dict so the store stays correct if several threads/loops share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from tier_router.store.base import (
    Record,
    Scalar,
    Value,
    apply_add,
    check_deltas,
    check_expected,
    check_key,
    check_value,
    matches_expected,
    normalize_expiry,
)

_SWEEP_EVERY = 1024  # writes between full sweeps of expired items (keeps memory bounded)


class MemoryStore:
    """In-process `Store`. `clock` is injectable so tests can move time."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._items: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._writes = 0

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _live(self, key: str, now: float) -> Record | None:
        record = self._items.get(key)
        if record is not None and record.live(now) is None:
            del self._items[key]  # lazy purge
            return None
        return record

    def _write(self, key: str, record: Record) -> None:
        self._items[key] = record
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self._clock()
            for k in [k for k, r in self._items.items() if r.live(now) is None]:
                del self._items[k]

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        now = self._clock()
        out: dict[str, Value] = {}
        with self._lock:
            for key in keys:
                record = self._live(check_key(key), now)
                if record is not None:
                    out[key] = dict(record.value)
        return out

    async def get(self, key: str) -> Value | None:
        return (await self.get_many([key])).get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        record = Record(check_value(value), normalize_expiry(expires_at))
        with self._lock:
            self._write(check_key(key), record)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        check_key(key)
        check_deltas(deltas, limits)
        expiry = normalize_expiry(expires_at)
        with self._lock:
            result = apply_add(self._items.get(key), deltas, limits, expiry, self._clock())
            if result is None:
                return None
            record, new = result
            self._write(key, record)
            return new

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        check_key(key)
        check_expected(expected)
        record = Record(check_value(value), normalize_expiry(expires_at))
        with self._lock:
            if not matches_expected(self._items.get(key), expected, self._clock()):
                return False
            self._write(key, record)
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(check_key(key), None)

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
