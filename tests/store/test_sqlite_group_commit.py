"""SQLite group commit: the calls queued while the writer thread is busy run as one batch, in
one transaction, with one commit — and each caller still gets exactly its own outcome.

Batches are made deterministic by parking the writer thread on an event (`parked`): every
call made meanwhile queues behind it and is taken as one batch when the event is set."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from tier_router.store.base import StoreError, StoreUnavailable
from tier_router.store.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


class RecordingStore(SQLiteStore):
    """Records the size of every batch the writer thread runs; `fail_next_commit` makes the
    next write batch fail at its end, as a COMMIT that fails would (a disk error)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail_next_commit = False

    def _run_batch(self, batch: list) -> None:  # type: ignore[type-arg]
        self.batches.append(len(batch))
        super()._run_batch(batch)

    def _maybe_purge(self, conn: sqlite3.Connection) -> None:
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise sqlite3.OperationalError("disk I/O error")
        super()._maybe_purge(conn)


@asynccontextmanager
async def parked(store: SQLiteStore) -> AsyncIterator[None]:
    """The writer thread is busy (waiting on an event) for the duration of the block."""
    release, busy = threading.Event(), threading.Event()

    def wait() -> None:
        busy.set()
        release.wait(10)

    waiting = asyncio.ensure_future(store._on_thread(wait))
    assert await asyncio.to_thread(busy.wait, 10)
    try:
        yield
    finally:
        release.set()
        await waiting


def rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT k, v FROM kv"))


async def settle(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_writes_queued_together_share_one_transaction_and_each_gets_its_result(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.db")
    await store.put("k", {"n": 0})
    async with parked(store):
        adds = [asyncio.ensure_future(store.add("k", {"n": 1})) for _ in range(50)]
        await settle()
    results = await asyncio.gather(*adds)
    assert sorted(r["n"] for r in results if r) == list(range(1, 51))  # each add its own new value
    assert 50 in store.batches  # ... from one batch
    assert await store.get("k") == {"n": 50}
    await store.aclose()


async def test_many_concurrent_writers_sum_exactly(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.db")
    await asyncio.gather(*(store.add(f"k{i % 3}", {"n": 1, "m": 2}) for i in range(600)))
    assert await store.get_many(["k0", "k1", "k2"]) == {f"k{i}": {"n": 200, "m": 400} for i in range(3)}
    assert sum(store.batches) == 601  # every call ran once (the first one of all: the first get)
    await store.aclose()


async def test_a_call_that_raises_fails_alone_and_the_rest_of_its_batch_commits(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.db")
    await store.put("text", {"s": "abc"})
    async with parked(store):
        before = asyncio.ensure_future(store.add("a", {"n": 1}))
        bad = asyncio.ensure_future(store.add("text", {"s": 1}))  # adding to a str field
        after = asyncio.ensure_future(store.put("b", {"n": 2}))
        await settle()
    assert await before == {"n": 1}
    with pytest.raises(StoreError):
        await bad
    await after
    assert 3 in store.batches
    assert await store.get_many(["a", "b", "text"]) == {"a": {"n": 1}, "b": {"n": 2}, "text": {"s": "abc"}}
    await store.aclose()


async def test_a_failing_commit_fails_every_waiter_and_lands_nothing(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.db")
    await store.put("k", {"n": 10})
    async with parked(store):
        store.fail_next_commit = True
        calls = [asyncio.ensure_future(store.add("k", {"n": 1})) for _ in range(5)]
        calls.append(asyncio.ensure_future(store.put("new", {"n": 1})))
        await settle()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, StoreError) and "disk I/O error" in str(o) for o in outcomes), outcomes
    assert await store.get_many(["k", "new"]) == {"k": {"n": 10}}  # none of the batch landed
    assert await store.add("k", {"n": 1}) == {"n": 11}  # and the next batch works
    await store.aclose()


async def test_a_locked_file_fails_the_whole_batch_as_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_s=0.1)
    await store.put("k", {"n": 1})
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    try:
        async with parked(store):
            other.execute("BEGIN IMMEDIATE")
            calls = [asyncio.ensure_future(store.add("k", {"n": 1})) for _ in range(3)]
            reads = asyncio.ensure_future(store.get("k"))  # a read in a write batch waits for it too
            await settle()
        outcomes = await asyncio.gather(*calls, reads, return_exceptions=True)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.get("k") == {"n": 1}
    await store.aclose()


async def test_a_cancelled_waiter_does_not_withdraw_or_double_its_write(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "s.db")
    await store.put("k", {"n": 0})
    async with parked(store):
        gone = asyncio.ensure_future(store.add("k", {"n": 1}))
        stays = asyncio.ensure_future(store.add("k", {"n": 10}))
        await settle()
        gone.cancel()
        await settle()
        assert gone.cancelled()
    assert await stays == {"n": 11}  # the cancelled caller's write ran first, once
    await store._on_thread(lambda: None)
    assert await store.get("k") == {"n": 11}
    await store.aclose()


async def test_aclose_runs_and_commits_every_call_queued_before_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.put("k", {"n": 0})
    async with parked(store):
        adds = [asyncio.ensure_future(store.add("k", {"n": 1})) for _ in range(20)]
        puts = [asyncio.ensure_future(store.put(f"p{i}", {"n": i})) for i in range(5)]
        await settle()
        closing = asyncio.ensure_future(store.aclose())
        await settle()
        assert not closing.done()  # waits for the queue
    await closing
    assert all(not isinstance(r, BaseException) for r in await asyncio.gather(*adds, *puts))
    assert rows(tmp_path / "s.db") == {"k": '{"n":20}'} | {f"p{i}": f'{{"n":{i}}}' for i in range(5)}
    with pytest.raises(StoreError, match="closed"):
        await store.add("k", {"n": 1})


async def test_reads_alone_run_without_taking_the_write_lock(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_s=0.1)
    await store.put("k", {"n": 1})
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes: WAL readers are not blocked
    try:
        assert await asyncio.gather(store.get("k"), store.get_many(["k", "x"])) == [
            {"n": 1},
            {"k": {"n": 1}},
        ]
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.aclose()


class TracingStore(SQLiteStore):
    """Records every SQL statement the writer thread's connection runs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.statements: list[str] = []

    def _connection(self) -> sqlite3.Connection:
        fresh = self._conn is None
        conn = super()._connection()
        if fresh:
            conn.set_trace_callback(self.statements.append)
        return conn


def verbs(statements: list[str]) -> list[str]:
    return [" ".join(s.split()[:2]) if s.startswith("BEGIN") else s.split()[0] for s in statements]


async def test_an_add_alone_in_its_batch_runs_four_statements_and_no_savepoint(tmp_path: Path) -> None:
    """The settle's cost is paid per statement (each one hands the GIL to the busy loop): a batch
    of one is its own transaction, so it needs no SAVEPOINT/RELEASE around its call."""
    store = TracingStore(tmp_path / "s.db")
    await store.add("k", {"n": 1})  # opens the connection (pragmas, schema) and the purge clock
    store.statements.clear()
    assert await store.add("k", {"n": 2}) == {"n": 3}
    assert verbs(store.statements) == ["BEGIN IMMEDIATE", "SELECT", "INSERT", "COMMIT"]
    await store.aclose()


async def test_a_batch_of_adds_pays_one_begin_and_one_commit_and_a_savepoint_per_call(tmp_path: Path) -> None:
    store = TracingStore(tmp_path / "s.db")
    await store.add("k", {"n": 1})
    async with parked(store):
        store.statements.clear()
        adds = [asyncio.ensure_future(store.add("k", {"n": 1})) for _ in range(3)]
        await settle()
    assert sorted(r["n"] for r in await asyncio.gather(*adds) if r) == [2, 3, 4]
    assert verbs(store.statements) == [
        "BEGIN IMMEDIATE",
        *(["SAVEPOINT", "SELECT", "INSERT", "RELEASE"] * 3),
        "COMMIT",
    ]
    await store.aclose()
