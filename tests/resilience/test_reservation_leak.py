"""Issue 13, item 2: a slow store must not leak budget reservations.

A reservation write that misses the store deadline may still land: DynamoDB received the
request (here: a proxy holds it 3 s, then moto applies it); SQLite's worker thread applies
it when another process releases its lock. Before reservations were holds keyed by request,
such a write was never settled: `committed` kept the worst case for the rest of the day and
later requests got 429 "the budget resets in 8h". Now each lands as a hold that its settle
releases (or that expires after `reservation_ttl_s` and is reclaimed).

The real router (`tier-router serve`, default configuration: store deadline 1 s, access log
on, `on_store_error: allow`) on SQLite and on DynamoDB (moto behind a slow proxy), a cap of
$1, requests that each reserve ~$0.30: three are served while the store is slow; afterwards
committed spend must equal settled spend, and a fourth ~$0.30 request must be served.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.moto_process import MotoProcess, moto_process
from tests.support.router_process import Router, running_router
from tests.support.slow_proxy import slow_proxy
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    dynamodb_url,
    rules_for,
    scripted_upstream,
    sqlite_url,
    store_env,
)

pytestmark = pytest.mark.integration

STALL_S = 3.0  # the store's stall: three times the router's 1 s deadline
TTL_S = 3  # budgets.reservation_ttl_s for these routers
WORST_TOKENS = 75_000  # x $4/Mtok output (model-a) = $0.30 reserved per request
SLOW_REQUESTS = 3  # 3 x $0.30 leaked would leave $0.10 of the $1 cap: the next request 429s


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with scripted_upstream("leak-fake") as fake:
        yield fake


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoProcess]:
    with moto_process() as server:
        yield server


def chat(router: Router) -> httpx.Response:
    return httpx.post(
        router.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {router.key}"},
        json={
            "model": "model-a",
            "max_tokens": WORST_TOKENS,
            "messages": [{"role": "user", "content": "hi"}],
        },
        timeout=30,
    )


@contextmanager
def sqlite_locked(path: Path, seconds: float) -> Iterator[None]:
    """Another connection holds SQLite's write lock for `seconds` (as another process would)."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(5)
    try:
        yield
    finally:
        thread.join(seconds + 5)


def run_case(router: Router, slow_store: Callable[[], AbstractContextManager[object]]) -> None:
    assert chat(router).status_code == 200  # warm: the store exists, connections are open
    before = router.ledger()
    with slow_store(), ThreadPoolExecutor(SLOW_REQUESTS) as pool:
        answers = list(pool.map(lambda _: chat(router), range(SLOW_REQUESTS)))
    assert [a.status_code for a in answers] == [200] * SLOW_REQUESTS  # fail open: served
    time.sleep(STALL_S + TTL_S + 1.5)  # every late write has landed, every hold has expired

    after = router.ledger()
    assert after.budget_spent is not None
    assert before.budget_spent is not None
    # Nothing may stay held (the ledger's own writes may have timed out: fail open, documented).
    assert after.budget_committed == after.budget_spent, (
        f"committed ${after.budget_committed / 1e6:.6f} != spent ${after.budget_spent / 1e6:.6f}: "
        "a reservation written after its deadline was never settled"
    )
    assert after.raw["budgets"]["global"]["in_flight"] == 0
    assert after.budget_spent - before.budget_spent <= SLOW_REQUESTS * 1_000  # actual cost, not $0.30s
    late = chat(router)
    assert late.status_code == 200, late.text  # the budget is not locked for the day


def test_sqlite_locked_by_another_process(upstream: Upstream, tmp_path: Path) -> None:
    store = sqlite_url(tmp_path)
    rules = rules_for(upstream.url, budgets={"daily_usd": 1, "reservation_ttl_s": TTL_S})
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
    with running_router(tmp_path, rules, key=ROUTER_KEY, store_url=store, env=env) as router:
        run_case(router, lambda: sqlite_locked(tmp_path / "state.db", STALL_S))


def test_dynamodb_answering_after_the_deadline(upstream: Upstream, moto: MotoProcess, tmp_path: Path) -> None:
    table = moto.create_table()
    with slow_proxy(moto.endpoint, 0.0) as proxy:
        store = dynamodb_url(moto, table, endpoint=proxy.endpoint)
        rules = rules_for(upstream.url, budgets={"daily_usd": 1, "reservation_ttl_s": TTL_S})
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store), "TIER_ROUTER_STORE_TIMEOUT_S": "1"}

        @contextmanager
        def slow() -> Iterator[None]:
            proxy.delay_s = STALL_S
            try:
                yield
            finally:
                proxy.delay_s = 0.0

        with running_router(tmp_path, rules, key=ROUTER_KEY, store_url=store, env=env) as router:
            run_case(router, slow)
