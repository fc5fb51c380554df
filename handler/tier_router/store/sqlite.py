"""`sqlite:///path.db` — the embedded local default, shared by processes on one machine.

Why it is safe across processes:
- WAL journal: readers never block the writer and vice versa;
- every read-modify-write (`add`, `put_if`) runs in `BEGIN IMMEDIATE`, which takes the
  write lock up front, so two processes can never both read the old value;
- `busy_timeout` makes a process wait for the lock instead of failing at once.

Why it never blocks the event loop: all SQLite calls run on ONE dedicated writer thread that
owns the only connection (sqlite3 connections are single-thread objects). Calls from the loop
are queued to that thread; a slow disk delays only store calls. A call whose caller gave up
(the store deadline) still runs when its turn comes: like a DynamoDB request that timed out,
a write may land after its deadline, never silently vanish.

Group commit: the thread takes every call queued while it was busy as one batch, runs the
batch's writes in ONE `BEGIN IMMEDIATE` transaction (each call in its own savepoint, so a
call that raises leaves the others' writes intact) and commits once; then it hands all the
results back to the loop in one wake-up. A call is answered only after its transaction has
committed, so an acknowledged write is as durable as a write committed alone; a failing
`BEGIN` or `COMMIT` fails every call of the batch, none of whose writes then landed. At low
load a batch is one call; under load, one commit and one thread hop serve many.
`aclose` (the server's shutdown) runs every call queued before it, then closes.

Rows hold the item as JSON text plus an `expires_at` column (whole epoch seconds, NULL
for none). Expired rows are absent on read and purged lazily by writers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

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
_EXIT_DRAIN_S = 5.0
_THREAD_NAME = "tier-router-sqlite"


class _Call:
    """One store call queued for the writer thread, and where its outcome goes."""

    __slots__ = ("args", "closes", "fn", "future", "loop", "outcome", "writes")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[object, ...],
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[Any] | None,
        *,
        writes: bool = False,
        closes: bool = False,
    ) -> None:
        self.fn, self.args, self.loop, self.future = fn, args, loop, future
        self.writes = writes
        """Runs inside the batch's write transaction."""
        self.closes = closes
        """The thread's last call: it runs after everything queued before it."""
        self.outcome: object = None
        """The call's result, or the exception it raised (set by the writer thread)."""


_LIVE: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
"""Stores whose writer thread runs: drained at interpreter exit (`_drain_at_exit`)."""


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
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None  # started by the first call
        self._start_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # touched only on the writer thread
        self._next_purge = 0.0

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- plumbing: the loop side ------------------------------------------------------

    async def _on_thread(self, fn: Callable[..., T], *args: object, writes: bool = False) -> T:
        """Run `fn` on the writer thread (inside the batch's transaction when `writes`);
        sqlite3 errors become StoreError(s)."""
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._submit(_Call(fn, args, loop, future, writes=writes))
        try:
            # A caller that stops waiting (the store deadline) cancels only its future: the
            # call stays queued and runs. A write that timed out may land later, as on
            # DynamoDB — the budget's idempotent writes count on it; a dropped settle was lost.
            return await future
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailable(f"SQLite store {self.path} stayed locked: {exc}") from exc
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _submit(self, call: _Call) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    calls = self._calls
                    args = (weakref.ref(self), calls)
                    thread = threading.Thread(target=_writer, args=args, name=_THREAD_NAME, daemon=True)
                    weakref.finalize(self, calls.put, None)  # dropped without aclose: the thread ends
                    thread.start()
                    _LIVE.add(self)
                    self._thread = thread
        self._calls.put(call)

    @staticmethod
    def _deliver(calls: list[_Call]) -> None:
        """On the loop: hand each outcome to its caller (unless it stopped waiting)."""
        for call in calls:
            future = call.future
            if future is None or future.done():
                continue
            if isinstance(call.outcome, BaseException):
                future.set_exception(call.outcome)
            else:
                future.set_result(call.outcome)

    # --- the writer thread ------------------------------------------------------------

    def _serve(self, first: _Call) -> bool:
        """One batch: `first` and every call queued behind it, run and answered. False once
        the closing call has run (the thread ends)."""
        batch = [first]
        with contextlib.suppress(queue.Empty):
            while not batch[-1].closes:
                call = self._calls.get_nowait()
                if call is not None:  # (None: only ever queued alone, by a dropped store)
                    batch.append(call)
        last = batch.pop() if batch[-1].closes else None
        if batch:
            self._run_batch(batch)
            self._answer(batch)
        if last is not None:
            self._run_one(last)
            self._answer([last])
            return False
        return True

    def _run_batch(self, batch: list[_Call]) -> None:
        try:
            conn = self._connection()
        except BaseException as exc:  # cannot open the file: every call fails alike
            for call in batch:
                call.outcome = exc
            return
        if not any(call.writes for call in batch):
            for call in batch:
                self._run_one(call)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock, before the first read
        except BaseException as exc:
            for call in batch:
                call.outcome = exc
            return
        try:
            if len(batch) == 1:  # alone in its transaction: no savepoint needed to undo it alone
                if not self._run_one(batch[0]):
                    raise batch[0].outcome  # type: ignore[misc]
            else:
                for call in batch:
                    conn.execute("SAVEPOINT call")
                    if self._run_one(call):
                        conn.execute("RELEASE call")
                    elif isinstance(call.outcome, sqlite3.Error):  # the transaction may be gone with it
                        raise call.outcome
                    else:
                        conn.execute("ROLLBACK TO call")
                        conn.execute("RELEASE call")
            self._maybe_purge(conn)
            conn.execute("COMMIT")
        except BaseException as exc:  # nothing of the batch landed: every call fails with it
            with contextlib.suppress(sqlite3.Error):  # keep the original error
                conn.execute("ROLLBACK")  # never leave the connection inside a transaction
            for call in batch:
                call.outcome = exc

    @staticmethod
    def _run_one(call: _Call) -> bool:
        try:
            call.outcome = call.fn(*call.args)
        except Exception as exc:
            call.outcome = exc
            return False
        return True

    @staticmethod
    def _answer(batch: list[_Call]) -> None:
        """One wake-up per event loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        for call in batch:
            if call.loop is not None:
                by_loop.setdefault(call.loop, []).append(call)
        for loop, calls in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
                loop.call_soon_threadsafe(SQLiteStore._deliver, calls)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
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

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY_S
        conn.execute(
            "DELETE FROM kv WHERE k IN (SELECT k FROM kv WHERE expires_at <= ? LIMIT ?)",
            (now, _PURGE_BATCH),
        )

    # --- operations (each runs on the writer thread; writes inside the batch's transaction)

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

    def _add_to(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expiry: int | None, marks: Marks
    ) -> dict[str, int] | None:
        result = apply_add(self._read(key), deltas, limits, expiry, self._clock(), marks)
        if result is None:
            return None
        record, new = result
        self._write(key, record)
        return new

    def _replace_if(self, key: str, record: Record, expected: dict[str, Scalar | None]) -> bool:
        if not matches_expected(self._read(key), expected, self._clock()):
            return False
        self._write(key, record)
        return True

    def _remove(self, key: str) -> None:
        self._connection().execute("DELETE FROM kv WHERE k = ?", (key,))

    def _select_one(self) -> None:
        self._connection().execute("SELECT 1 FROM kv LIMIT 1").fetchall()

    def _close(self) -> None:
        _LIVE.discard(self)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    # --- primitives (see Store) ---------------------------------------------------------

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        return await self._on_thread(self._select_many, keys)

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        await self._on_thread(self._write, key, Record(value, expires_at), writes=True)

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        return await self._on_thread(self._add_to, key, deltas, limits, expires_at, marks, writes=True)

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        return await self._on_thread(self._replace_if, key, Record(value, expires_at), expected, writes=True)

    async def _delete(self, key: str) -> None:
        await self._on_thread(self._remove, key, writes=True)

    async def _ping(self) -> None:
        try:
            await self._on_thread(self._select_one)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _aclose(self) -> None:
        """Every call queued before this one runs (and commits), then the connection closes."""
        if self._thread is None:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._calls.put(_Call(self._close, (), loop, done, closes=True))
        await asyncio.shield(done)  # a cancelled shutdown still closes once the queue has run

    def _drain_at_exit(self) -> None:
        """The interpreter exits without `aclose`: run what is queued (bounded), then close."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._calls.put(_Call(self._close, (), None, None, closes=True))
            thread.join(_EXIT_DRAIN_S)


def _writer(ref: weakref.ref[SQLiteStore], calls: queue.SimpleQueue[_Call | None]) -> None:
    """A store's writer thread. Holds the store only while running a batch, so a store dropped
    without `aclose` is freed (and its connection closed); its finalizer then queues None."""
    while True:
        first = calls.get()
        store = None if first is None else ref()
        if store is None or first is None or not store._serve(first):
            return
        del store, first


@atexit.register
def _drain_at_exit() -> None:
    for store in list(_LIVE):
        store._drain_at_exit()
