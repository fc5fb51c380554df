"""SQLite specifics: WAL, the event loop stays free while SQLite waits, lazy purging."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from tier_router.store.base import StoreError, StoreUnavailable
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock

pytestmark = pytest.mark.anyio


async def test_uses_wal_journal(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.put("k", {"n": 1})
    await store.aclose()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_waiting_for_the_write_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_s=5)
    await store.put("k", {"n": 1})
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.sleep(0.01)

    async def release_later() -> None:
        await anyio.sleep(0.3)
        other.execute("COMMIT")

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        tg.start_soon(release_later)
        started = time.monotonic()
        assert await store.add("k", {"n": 1}) == {"n": 2}
        waited = time.monotonic() - started
        tg.cancel_scope.cancel()
    other.close()
    await store.aclose()
    assert waited >= 0.25  # it really waited for the lock...
    assert ticks >= 10  # ...while the loop kept running other tasks


async def test_lock_held_past_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_s=0.1)
    await store.ping()
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.add("k", {"n": 1})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await store.add("k", {"n": 1}) == {"n": 1}  # the failed transaction left nothing behind
    await store.aclose()


async def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "s.db")
    await first.add("c", {"n": 5})
    await first.aclose()
    second = SQLiteStore(tmp_path / "s.db")
    assert await second.get("c") == {"n": 5}
    await second.aclose()


async def test_expired_rows_are_purged_lazily_by_writers(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.db", clock=clock)
    await store.put("old", {"n": 1}, expires_at=clock.now + 5)
    await store.put("forever", {"n": 2})
    clock.advance(120)  # past expiry and past the purge interval
    await store.put("other", {"n": 3})
    await store.aclose()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        keys = {k for (k,) in conn.execute("SELECT k FROM kv")}
    assert keys == {"forever", "other"}


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.get("k")


async def test_unopenable_path_fails_ping(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "missing-dir" / "s.db")
    with pytest.raises(StoreUnavailable, match="unable to open"):
        await store.ping()
    await store.aclose()
