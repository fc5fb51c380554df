"""`sqlite:///path.db` — the embedded local default, shared by processes on one machine.

Why it is safe across processes:
- WAL journal: readers never block the writer and vice versa;
- every read-modify-write (`add`, `put_if`) runs in `BEGIN IMMEDIATE`, which takes the
  write lock up front, so two processes can never both read the old value;
- `busy_timeout` makes a process wait for the lock instead of failing at once.

Why it never blocks the event loop: all SQLite calls run on ONE dedicated worker thread
that owns the only connection (sqlite3 connections are single-thread objects). Calls from
the loop are queued to that thread; a slow disk delays only store calls. A call whose caller
gave up (the store deadline) still runs when its turn comes: like a DynamoDB request that
timed out, a write may land after its deadline, never silently vanish.

Rows hold the item as JSON text plus an `expires_at` column (whole epoch seconds, NULL
for none). Expired rows are absent on read and purged lazily by writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tier_router.store.base import Marks, Scalar, Store, StoreError, StoreUnavailable, Value
from tier_router.store.record import Record, apply_add, matches_expected

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL",
)
_CHUNK = 500  # stay under SQLite's bound-parameter limit on old builds (999)
_PURGE_EVERY_S = 60.0
_PURGE_BATCH = 500


class SQLiteStore(Store):
    """`Store` on one SQLite file. Open one per process (connections do not survive fork)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(deadline_s=deadline_s)
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier-router-sqlite")
        self._conn: sqlite3.Connection | None = None  # touched only on the worker thread
        self._next_purge = 0.0

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- plumbing -------------------------------------------------------------------

    async def _on_thread(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn` on the worker thread; sqlite3 errors become StoreError(s)."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._executor, fn, *args)
        try:
            # Shielded: a caller that stops waiting (the store deadline) does not withdraw a
            # call still queued for the thread. A write that timed out may land later, as on
            # DynamoDB — the budget's idempotent writes count on it; a dropped settle was lost.
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(_retrieve)
            raise
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailable(f"SQLite store {self.path} stayed locked: {exc}") from exc
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            try:
                # journal_mode=WAL needs a brief exclusive lock; when several processes
                # start together one may see SQLITE_BUSY here without the busy handler.
                for attempt in range(50):
                    try:
                        conn.execute("PRAGMA journal_mode=WAL")
                        break
                    except sqlite3.OperationalError:
                        if attempt == 49:
                            raise
                        time.sleep(0.02)
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
                for statement in _SCHEMA:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _read(self, key: str) -> Record | None:
        row = self._connection().execute("SELECT v, expires_at FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else Record(json.loads(row[0]), row[1])

    def _write(self, key: str, record: Record) -> None:
        self._connection().execute(
            "INSERT OR REPLACE INTO kv (k, v, expires_at) VALUES (?, ?, ?)",
            (key, json.dumps(record.value, separators=(",", ":")), record.expires_at),
        )

    def _transaction(self, body: Callable[[], T]) -> T:
        """Run `body` under BEGIN IMMEDIATE (write lock taken before the first read)."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            self._maybe_purge(conn)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # keep the original error
                conn.execute("ROLLBACK")  # never leave the connection inside a transaction
            raise
        return result

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY_S
        conn.execute(
            "DELETE FROM kv WHERE k IN (SELECT k FROM kv WHERE expires_at <= ? LIMIT ?)",
            (now, _PURGE_BATCH),
        )

    # --- operations (each runs on the worker thread) ----------------------------------

    def _select_many(self, keys: list[str]) -> dict[str, Value]:
        conn = self._connection()
        now = self._clock()
        out: dict[str, Value] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT k, v, expires_at FROM kv WHERE k IN ({marks})", chunk)  # noqa: S608
            for k, v, expires_at in rows:
                if expires_at is None or expires_at > now:
                    out[k] = json.loads(v)
        return out

    def _replace(self, key: str, record: Record) -> None:
        self._transaction(lambda: self._write(key, record))

    def _add_in_transaction(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expiry: int | None, marks: Marks
    ) -> dict[str, int] | None:
        def body() -> dict[str, int] | None:
            result = apply_add(self._read(key), deltas, limits, expiry, self._clock(), marks)
            if result is None:
                return None
            record, new = result
            self._write(key, record)
            return new

        return self._transaction(body)

    def _replace_if(self, key: str, record: Record, expected: dict[str, Scalar | None]) -> bool:
        def body() -> bool:
            if not matches_expected(self._read(key), expected, self._clock()):
                return False
            self._write(key, record)
            return True

        return self._transaction(body)

    def _remove(self, key: str) -> None:
        self._connection().execute("DELETE FROM kv WHERE k = ?", (key,))

    def _select_one(self) -> None:
        self._connection().execute("SELECT 1 FROM kv LIMIT 1").fetchall()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- primitives (see Store) ---------------------------------------------------------

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        return await self._on_thread(self._select_many, keys)

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        await self._on_thread(self._replace, key, Record(value, expires_at))

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        return await self._on_thread(self._add_in_transaction, key, deltas, limits, expires_at, marks)

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        return await self._on_thread(self._replace_if, key, Record(value, expires_at), expected)

    async def _delete(self, key: str) -> None:
        await self._on_thread(self._remove, key)

    async def _ping(self) -> None:
        try:
            await self._on_thread(self._select_one)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)


def _retrieve(job: asyncio.Future[object]) -> None:
    """Mark the outcome of a call nobody waits for any more as seen (no 'never retrieved')."""
    if not job.cancelled():
        job.exception()
