"""A per-process view of store items: fetched in batches, trusted for `ttl_s`, one fetch in
flight per key.

Breakers (`breakers.board`) and budget pacing (`spend.budget`) read shared state on every
request but can live with a view up to `ttl_s` old, so a warm process under load does not
touch the store per request. Both need the same guarantees, kept here once:

- a key is fresh for `ttl_s` seconds after the fetch that read it began (0: always stale);
- concurrent callers missing the same key share ONE fetch (single flight): a burst of cold
  requests costs one round trip, not one each;
- one caller's cancellation (its client went away) never cancels the shared fetch the
  others wait on;
- a fetch that raises stores nothing: every caller waiting on it gets the exception and
  the next call fetches again. (Fetchers that fail open catch their store errors and
  return what to assume instead.)

The owner's own writes go in with `set` / `amend`, so it sees them at once without a read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

Fetch = Callable[[list[str], float], Awaitable[Mapping[str, V]]]
"""(stale keys, now) -> a value per key; keys it leaves out stay unknown."""


@dataclass(slots=True)
class _Entry(Generic[V]):
    fetched_at: float
    value: V


class Snapshot(Generic[V]):
    """Values by key, refreshed through `fetch` when older than `ttl_s` seconds.

    `max_entries` bounds memory when keys change over time (budget days, router keys): past
    it, entries older than `ttl_s` are dropped at the next fetch.
    """

    def __init__(
        self,
        fetch: Fetch[V],
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        max_entries: int | None = None,
    ) -> None:
        self._fetch = fetch
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, _Entry[V]] = {}
        self._inflight: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def read(self, keys: Iterable[str], now: float | None = None) -> dict[str, V]:
        """The known values of `keys`, fetching the stale ones first (at most one fetch of
        our own; keys already being fetched by another caller are waited for)."""
        keys = list(dict.fromkeys(keys))
        now = self._clock() if now is None else now
        stale = [k for k in keys if not self.fresh(k, now)]
        if stale:
            await self._refresh(stale, now)
        return {k: e.value for k in keys if (e := self._entries.get(k)) is not None}

    def fresh(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and now - entry.fetched_at < self.ttl_s

    def get(self, key: str) -> V | None:
        """The last known value, however old (None: never fetched or set)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.value

    def set(self, key: str, value: V, now: float | None = None) -> None:
        """Our own write: as fresh as a read at `now`."""
        self._entries[key] = _Entry(self._clock() if now is None else now, value)

    def amend(self, key: str, value: V, now: float | None = None) -> None:
        """Our own write to part of a value: the rest is as old as it was, so the entry keeps
        its age (and is refreshed on schedule); a key not seen yet is fresh from now."""
        entry = self._entries.get(key)
        if entry is None:
            self.set(key, value, now)
        else:
            entry.value = value

    def discard(self, key: str) -> None:
        """Forget a key: the next read fetches it."""
        self._entries.pop(key, None)

    async def _refresh(self, keys: Sequence[str], now: float) -> None:
        waits = {self._inflight[k] for k in keys if k in self._inflight}
        todo = [k for k in keys if k not in self._inflight]
        if todo:
            task = asyncio.ensure_future(self._run(todo, now))
            for k in todo:
                self._inflight[k] = task
            task.add_done_callback(lambda done: self._landed(todo, done))
            waits.add(task)
        for wait in waits:
            await asyncio.shield(wait)  # one caller's cancellation must not cancel the others' fetch

    async def _run(self, keys: list[str], now: float) -> None:
        values = await self._fetch(keys, now)
        if self._max is not None and len(self._entries) > self._max:
            self._entries = {k: e for k, e in self._entries.items() if now - e.fetched_at < self.ttl_s}
        for k in keys:
            known = self._entries.get(k)
            if k in values and (known is None or known.fetched_at <= now):  # a later `set` wins
                self._entries[k] = _Entry(now, values[k])

    def _landed(self, keys: list[str], task: asyncio.Future[None]) -> None:
        for k in keys:
            if self._inflight.get(k) is task:
                del self._inflight[k]
        if not task.cancelled():
            task.exception()  # retrieved: if every waiter was cancelled, asyncio must not complain
