"""Issue 12, "Done when" 1: the real router under uvicorn (`tier-router serve`, the default
configuration: SQLite store, access log on, router key required), driven by the real openai
SDK, sync and async, streamed and not, with clients that read to the end, close at
`data: [DONE]`, close after the first chunk and close before the first byte — and the ledger's
request count, its cost, the budget's spent total, the `x-router-cost-usd` headers, the usage
chunks' `cost_usd` and the access-log lines all agree, request for request.

Once per store backend (SQLite; DynamoDB on a moto server): one router process per backend,
shared by the scenarios, each scenario measured as a delta between two idle points.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.agreement import collect, problems, quiesce, report
from tests.support.clients import (
    ASYNC_BEHAVIOURS,
    SYNC_BEHAVIOURS,
    Seen,
    gather_async,
    raw_close,
    run_sync,
    sync_client,
)
from tests.support.router_process import Router, running_router
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    dynamodb_url,
    rules_for,
    sqlite_url,
    store_env,
)

pytestmark = pytest.mark.integration

MODELS = ("auto", "model-a", "model-b", "alt")


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def router(
    request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Router]:
    workdir: Path = tmp_path_factory.mktemp(f"ledger-{request.param}")
    if request.param == "dynamodb":
        store = dynamodb_url(request.getfixturevalue("moto"))
    else:
        store = sqlite_url(workdir)
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store)}
    rules = rules_for(upstream.url)
    with running_router(workdir, rules, key=ROUTER_KEY, store_url=store, env=env) as running:
        yield running


def run_and_check(router: Router, upstream: Upstream, scenario: Callable[[], list[Seen]]) -> list[Seen]:
    window = quiesce(router)
    seen: list[Seen] = scenario()
    observed = collect(window, len(seen))
    found = problems(observed, seen, reached=upstream.app.tags)
    assert not found, report(found)
    return seen


@pytest.mark.parametrize("router", ["sqlite"], indirect=True)
def test_each_client_behaviour_alone(router: Router, upstream: Upstream) -> None:
    """Every behaviour, one request at a time per client kind (the sync sequence and the
    async one run side by side), then a raw socket that leaves. On SQLite only: the mix
    below runs every behaviour on both stores."""

    def sync_sequence() -> list[Seen]:
        with sync_client(router.url, router.key) as client:
            return [run_sync(client, b) for b in SYNC_BEHAVIOURS]

    def async_sequence() -> list[Seen]:
        return [
            s
            for b in ASYNC_BEHAVIOURS
            for s in asyncio.run(gather_async(router.url, router.key, [(b, "auto")]))
        ]

    def scenario() -> list[Seen]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = [pool.submit(sync_sequence), pool.submit(async_sequence)]
            seen = [s for part in parts for s in part.result()]
        seen.append(raw_close(router.url, router.key, upstream.app))
        return seen

    run_and_check(router, upstream, scenario)


def test_concurrent_mix_of_every_behaviour(router: Router, upstream: Upstream) -> None:
    """Three of each behaviour per client kind, all at once, over every model name kind
    (auto, a model, a tier), plus raw sockets that leave while the provider is working."""
    models = itertools.cycle(MODELS)
    sync_plan = [(b, next(models)) for b in SYNC_BEHAVIOURS for _ in range(3)]
    async_plan = [(b, next(models)) for b in ASYNC_BEHAVIOURS for _ in range(3)]

    def scenario() -> list[Seen]:
        with ThreadPoolExecutor(max_workers=12) as pool, sync_client(router.url, router.key) as client:
            async_part = pool.submit(asyncio.run, gather_async(router.url, router.key, async_plan))
            raws = [pool.submit(raw_close, router.url, router.key, upstream.app, m) for m in ("auto", "alt")]
            sync_part = list(pool.map(lambda plan: run_sync(client, *plan), sync_plan))
            return [*sync_part, *async_part.result(), *(r.result() for r in raws)]

    seen = run_and_check(router, upstream, scenario)
    assert {s.model for s in seen} >= set(MODELS)
