"""Integrity across processes: the guarantees budgets and breaker leases rely on, checked
on the two shared stores with real concurrency (8 processes, each with its own store).

moto serializes requests (see moto_server.py), so a lost update here is OUR bug.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest
from tier_router.store.base import Store, Value
from tier_router.store.factory import open_store

from tests.store import store_workers
from tests.support.moto_server import FAKE_ENV, MotoServer

PROCESSES = 8
ADDS_EACH = 500

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "dynamodb"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"  # 4 slashes: absolute path
    moto: MotoServer = request.getfixturevalue("moto")
    return f"dynamodb://{request.getfixturevalue('table')}?endpoint={moto.endpoint}"


def _context() -> multiprocessing.context.BaseContext:
    """forkserver: children fork from a clean, preloaded server — as fast as fork (no
    re-import per child) without forking this process and its server threads."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.store.store_workers"])
    return ctx


def _run_all(target: Callable[..., None], args: list[tuple]) -> None:
    ctx = _context()
    procs = [ctx.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)


def test_concurrent_adds_from_many_processes_are_exact(shared_url: str) -> None:
    barrier = _context().Barrier(PROCESSES)
    _run_all(store_workers.add_many, [(FAKE_ENV, shared_url, "counter", ADDS_EACH, barrier)] * PROCESSES)

    store = open_store(shared_url, settings=store_workers.NO_DEADLINE())
    assert asyncio.run(_get_and_close(store, "counter")) == {"n": PROCESSES * ADDS_EACH}


def test_put_if_race_between_processes_has_exactly_one_winner_per_key(shared_url: str) -> None:
    ctx = _context()
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    keys = [f"lease-{i}" for i in range(20)]
    _run_all(
        store_workers.race_put_if,
        [(FAKE_ENV, shared_url, keys, f"p{i}", barrier, results) for i in range(PROCESSES)],
    )

    won = dict(results.get(timeout=5) for _ in range(PROCESSES))
    winners = {key: [me for me, keys_won in won.items() if key in keys_won] for key in keys}
    assert all(len(w) == 1 for w in winners.values()), winners
    store = open_store(shared_url, settings=store_workers.NO_DEADLINE())
    stored = asyncio.run(_get_many_and_close(store, keys))
    assert {key: value["owner"] for key, value in stored.items()} == {k: w[0] for k, w in winners.items()}


async def _get_and_close(store: Store, key: str) -> Value | None:
    try:
        return await store.get(key)
    finally:
        await store.aclose()


async def _get_many_and_close(store: Store, keys: list[str]) -> dict[str, Value]:
    try:
        return await store.get_many(keys)
    finally:
        await store.aclose()
