"""Adversary against budget holds on SQLite shared by router processes (see
`test_holds_adversary.py` for the promises (a), (b), (c)). Tests named `..._breaks_today`
FAIL on the code they were written against, on purpose.

SQLite runs one write at a time per process, on one worker thread. When another process holds
the write lock past the store deadline, the write that is executing lands late, and the writes
queued behind it are cancelled with their futures and never run (5 adds timed out while the
file was locked: 1 applied). A settle dropped so is never retried; its hold expires and is
reclaimed, and the request's cost is counted nowhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.store.base import StoreUnavailable
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.holds import ACTUAL, CAP_USD, GLOBAL, TTL, WORST, counters, spent_reaches

pytestmark = pytest.mark.anyio


async def test_sqlite_settles_queued_behind_a_lock_are_dropped_breaks_today(tmp_path: Path) -> None:
    """BREAKS (a) on a real store, no fault injected. SQLite runs one write at a time per
    process; when another process holds the lock past the deadline, the write executing
    lands late, but the writes QUEUED behind it are cancelled with their futures and never
    run (5 adds timed out while the file was locked: 1 applied). Three requests finish
    together; their settles time out in the queue; two are never applied. Their holds
    expire and are reclaimed, and $1.60 of served cost is counted nowhere."""
    clock = FakeClock(at(2026, 11, 23, 12))
    store = SQLiteStore(tmp_path / "state.db", clock=clock, deadline_s=0.1)
    try:
        guard = BudgetGuard(store, BudgetConfig(daily_usd=10.0, reservation_ttl_s=TTL), clock=clock)
        held = [await guard.reserve(None, WORST, holder=f"req-{i}") for i in range(3)]
        assert all(isinstance(h, Reservation) for h in held)
        locked, free = threading.Event(), threading.Event()

        def other_process() -> None:
            conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            free.wait(5)
            conn.execute("ROLLBACK")
            conn.close()

        thread = threading.Thread(target=other_process, daemon=True)
        thread.start()
        assert locked.wait(5)
        await asyncio.gather(*(guard.settle(h, ACTUAL) for h in held if isinstance(h, Reservation)))
        free.set()
        thread.join(5)
        await spent_reaches(store, 3 * ACTUAL, 0.5)  # a retry may land them
        clock.advance(TTL + 1)
        await guard.status()
        assert await counters(store) == (3 * ACTUAL, 3 * ACTUAL, 0), "settled cost never counted"
    finally:
        await store.aclose()


# --- (c) settle racing reclaim on one SQLite file from two processes -----------------------


async def test_settle_racing_a_reclaim_from_another_process_counts_once(tmp_path: Path) -> None:
    """Two stores on one SQLite file (two connections, two worker threads: as two router
    processes). A request settles exactly when another process reclaims its expired hold
    (a request that ran past the TTL): whichever wins, the cost is counted once and the
    hold is gone. 30 rounds, both orders race for the write lock."""
    clock = FakeClock(at(2026, 11, 23, 12))
    a = SQLiteStore(tmp_path / "state.db", clock=clock, deadline_s=5)
    b = SQLiteStore(tmp_path / "state.db", clock=clock, deadline_s=5)
    try:
        ga = BudgetGuard(a, BudgetConfig(daily_usd=1000.0, reservation_ttl_s=TTL), clock=clock)
        gb = BudgetGuard(b, BudgetConfig(daily_usd=1000.0, reservation_ttl_s=TTL), clock=clock)
        for i in range(30):
            held = await ga.reserve(None, WORST, holder=f"req-{i}")
            assert isinstance(held, Reservation)
            clock.advance(TTL + 1)
            await asyncio.gather(ga.settle(held, ACTUAL), gb.holds.reclaim(GLOBAL, clock(), force=True))
            committed, spent, holds = await counters(a)
            assert (committed, spent, holds) == ((i + 1) * ACTUAL, (i + 1) * ACTUAL, 0), f"round {i}"
    finally:
        await a.aclose()
        await b.aclose()


# --- several router processes on one SQLite file, the lock contended -------------------------

PROCESSES, RUN_S, DEADLINE_S, STRESS_TTL_S = 2, 0.8, 0.03, 30


async def _stress_worker(path: str, mode: str, seed: int) -> dict[str, int]:
    """One router process: 8 requests at a time reserve $0.02-0.20, run 0-10 ms, settle 80%."""
    rnd = random.Random(seed)
    store = SQLiteStore(path, deadline_s=DEADLINE_S)
    config = BudgetConfig(daily_usd=CAP_USD, reservation_ttl_s=STRESS_TTL_S, on_store_error=mode)
    guard = BudgetGuard(store, config)
    stats = {"admitted": 0, "uncounted": 0, "refused": 0, "errors": 0, "actual": 0, "settles_failed": 0}

    class CountFailedSettles(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stats["settles_failed"] += record.getMessage().startswith("budget settle on")

    logging.getLogger("tier_router.spend.budget").addHandler(CountFailedSettles())

    async def one(i: int) -> None:
        worst = rnd.randint(20_000, 200_000)
        try:
            held = await guard.reserve(None, worst, holder=f"p{seed}-{i}")
        except StoreUnavailable:
            stats["errors"] += 1
            return
        if isinstance(held, CapReached):
            stats["refused"] += 1
            return
        stats["admitted"] += 1
        stats["uncounted"] += held.uncounted
        await asyncio.sleep(rnd.random() * 0.01)
        stats["actual"] += worst * 8 // 10
        await guard.settle(held, worst * 8 // 10)

    end, i = time.monotonic() + RUN_S, 0
    while time.monotonic() < end:
        await asyncio.gather(*(one(i + j) for j in range(8)))
        i += 8
    await asyncio.sleep(0.2)  # background rollbacks
    await store._on_thread(lambda: None)  # every late write queued on the worker thread has landed
    await store.aclose()
    return stats


def test_sqlite_processes_count_every_settled_cost_breaks_today(tmp_path: Path) -> None:
    """Per mode (`reject`, and `allow`: fail open), two router processes on one SQLite
    file, a 30 ms store deadline, and another connection taking the write lock for 50 ms
    every 200 ms: writes miss their deadline and land late (or, queued behind the one
    running, never), in every order. Every served request settles, so after the TTL
    committed must equal spent must equal what the served requests cost; with `reject`,
    that must be under the cap. Both modes
    run at once (4 worker processes), on two files. The TTL (30 s) outlasts the run; the final
    status read runs on a clock 31 s ahead, so it reclaims every hold left.

    Measured on the code this was written against (3 + 3 processes, 1.5 s): `reject` served
    $0.99 under the $1 cap, committed = spent, in most runs; in the others some of its
    settles were dropped in SQLite's queue and their cost vanished at the TTL (reduced:
    `test_sqlite_settles_queued_behind_a_lock_are_dropped_breaks_today`). `allow` served
    $33.74 (fail open, documented) and counted only $23.34 of it: late claims refused by the
    cap when they land, then settles whose release times out, so the cost is never charged
    alone (reduced: `test_fail_open_settle_that_times_out_charges_nothing_breaks_today`).
    """
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "handler")])}
    paths = {mode: str(tmp_path / f"{mode}.db") for mode in ("reject", "allow")}
    stop = threading.Event()

    def locker(path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        conn.execute("PRAGMA journal_mode=WAL")
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(0.05)
            conn.execute("ROLLBACK")
            time.sleep(0.15)
        conn.close()

    threads = [threading.Thread(target=locker, args=(p,), daemon=True) for p in paths.values()]
    for thread in threads:
        thread.start()
    try:
        workers = {
            (mode, seed): subprocess.Popen(
                [sys.executable, __file__, path, mode, str(seed)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=root,
                env=env,
            )
            for mode, path in paths.items()
            for seed in range(PROCESSES)
        }
        outputs = {k: json.loads(w.communicate(timeout=30)[0]) for k, w in workers.items()}
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)

    async def after_ttl(path: str) -> dict[str, Any]:
        """Status read as if the TTL had passed (a clock TTL ahead): every hold left is reclaimed."""
        later = FakeClock(time.time() + STRESS_TTL_S + 1)
        store = SQLiteStore(path, clock=later)
        try:
            config = BudgetConfig(daily_usd=CAP_USD, reservation_ttl_s=STRESS_TTL_S)
            return dict((await BudgetGuard(store, config, clock=later).status())["global"])
        finally:
            await store.aclose()

    for mode in ("reject", "allow"):
        served = {k: sum(o[k] for (m, _), o in outputs.items() if m == mode) for k in outputs[mode, 0]}
        assert served["admitted"] > 5
        assert served["refused"] > 0  # the cap was reached
        status = asyncio.run(after_ttl(paths[mode]))
        counted = round(float(status["spent_usd"]) * 1e6)
        assert status["in_flight"] == 0
        assert status["committed_usd"] == status["spent_usd"]
        assert counted == served["actual"], (
            f"{mode}: served ${served['actual'] / 1e6:.6f}, counted ${counted / 1e6:.6f} "
            f"({served['uncounted']} of {served['admitted']} served uncounted, "
            f"{served['settles_failed']} settles timed out)"
        )
        if mode == "reject":
            assert served["actual"] <= CAP_USD * 1_000_000


if __name__ == "__main__":  # a stress worker process (see above)
    print(json.dumps(asyncio.run(_stress_worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))))
