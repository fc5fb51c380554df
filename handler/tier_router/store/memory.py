"""`memory://` — a dict in this process. For unit tests and single-process dev runs.

State is not shared with other processes and is lost on exit. Every primitive runs to
completion without awaiting, so on one event loop each call is atomic; a lock still
guards the dict so the store stays correct if several threads/loops share it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tier_router.store.base import Marks, Scalar, Store, Value
from tier_router.store.record import Record, apply_add, matches_expected

_SWEEP_EVERY = 1024  # writes between full sweeps of expired items (keeps memory bounded)


class MemoryStore(Store):
    """In-process `Store`. `clock` is injectable so tests can move time."""

    def __init__(self, *, clock: Callable[[], float] = time.time, deadline_s: float | None = None) -> None:
        super().__init__(deadline_s=deadline_s)
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

    # --- primitives (see Store) ---------------------------------------------------------

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        now = self._clock()
        with self._lock:
            found = ((key, self._live(key, now)) for key in keys)
            return {key: dict(record.value) for key, record in found if record is not None}

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        with self._lock:
            self._write(key, Record(value, expires_at))

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        with self._lock:
            result = apply_add(self._items.get(key), deltas, limits, expires_at, self._clock(), marks)
            if result is None:
                return None
            record, new = result
            self._write(key, record)
            return new

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        with self._lock:
            if not matches_expected(self._items.get(key), expected, self._clock()):
                return False
            self._write(key, Record(value, expires_at))
            return True

    async def _delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
