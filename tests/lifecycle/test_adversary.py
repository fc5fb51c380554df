"""Trying to break the promise in ways the issue does not list: clients that leave while the
router waits for a slow state store, hundreds of streams cut at random points, a SQLite store
locked by another process while clients hang up, a client that leaves half-way through its
upload, sockets closed (or reset) the instant the request is sent, and provider failures
mid-stream. Whatever happens: one line per request, and ledger = lines = budget.

Routers here run with circuit breakers off, so that the provider failures one test provokes
never change what the next test's requests do.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.agreement import collect, line_cost, problems, quiesce, report
from tests.support.clients import (
    Seen,
    cost_of_usage,
    header_cost,
    http_request,
    new_tag,
    run_sync,
    sync_client,
    usage_from_sse,
    wait_until,
)
from tests.support.moto_process import MotoProcess
from tests.support.router_process import REQUEST_ID, Router, running_router
from tests.support.slow_proxy import slow_proxy
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    dynamodb_url,
    rules_for,
    sqlite_url,
    store_env,
    table_of,
)

pytestmark = pytest.mark.integration

NO_BREAKERS = {"breakers": {"enabled": False}}


def assert_agree(window: Any, seen: list[Seen], reached: Collection[str] = ()) -> None:
    observed = collect(window, len(seen))
    found = problems(observed, seen, reached=reached)
    assert not found, report(found)


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def chat_body(text: str, *, stream: bool = False, model: str = "auto") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


@pytest.fixture(scope="module")
def router(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """The default configuration (SQLite), breakers off."""
    workdir = tmp_path_factory.mktemp("adversary")
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
    rules = rules_for(upstream.url, **NO_BREAKERS)
    with running_router(workdir, rules, key=ROUTER_KEY, store_url=sqlite_url(workdir), env=env) as running:
        yield running


# ------------------------------------------------------------------------------ streams


async def _one_stream(http: httpx.AsyncClient, router: Router, rng: random.Random, index: int) -> Seen:
    """A stream read to the end, or cut after a random number of bytes (0: right after the
    headers); some drip slowly so the cut lands mid-stream rather than after the end."""
    tag = new_tag()
    drip = " [drip=0.02]" if index % 3 == 0 else ""
    cut = rng.choice([None, 0, rng.randint(1, 400), rng.randint(400, 3000)])
    seen = Seen("stream_end" if cut is None else "random_cut", "raw", tag, "auto")
    body = chat_body(f"Stream {index} [tag={tag}]{drip}", stream=True, model=rng.choice(["auto", "alt"]))
    headers = {"authorization": f"Bearer {router.key}"}
    async with http.stream("POST", router.url + "/v1/chat/completions", json=body, headers=headers) as r:
        seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
        if cut is None:
            text = (await r.aread()).decode()
            seen.usage_cost = cost_of_usage(usage_from_sse(text.splitlines()))
            return seen
        read = 0
        async for chunk in r.aiter_raw():
            read += len(chunk)
            if read >= cut:
                break
    return seen


CONCURRENT_STREAMS = 48
"""Streams open at once. Hundreds at once on the default SQLite store queue its writes past
the store's 1 s deadline, and a reservation that times out is admitted outside the budget —
the slow-store drift of issue 13 (item 2), not this test's subject: a stream cut anywhere is
counted once."""


async def _many_streams(router: Router, n: int, seed: int) -> list[Seen]:
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=min(n, CONCURRENT_STREAMS), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        return list(await asyncio.gather(*(_one_stream(http, router, rng, i) for i in range(n))))


def test_hundreds_of_streams_cut_at_random_points(router: Router, upstream: Upstream) -> None:
    window = quiesce(router)
    seen = asyncio.run(_many_streams(router, 200, seed=12))
    assert sum(s.behaviour == "random_cut" for s in seen) > 100
    assert_agree(window, seen, upstream.app.tags)


# ------------------------------------------------------------------- raw connections


def test_client_leaving_mid_upload_gets_one_line_and_no_bill(router: Router) -> None:
    window = quiesce(router)
    with connect(router.url) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {router.key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": "auto", "messages": [')
    deadline = time.monotonic() + 10
    while not router.chat_lines(window.start) and time.monotonic() < deadline:
        time.sleep(0.05)
    after = quiesce(router)
    lines = router.chat_lines(window.start)
    assert len(lines) == 1, f"{len(lines)} lines for one request that left mid-upload"
    assert lines[0].get("status") == 499
    assert after.base.requests == window.base.requests
    assert after.base.total == window.base.total


def test_sockets_closed_or_reset_right_after_sending(router: Router, upstream: Upstream) -> None:
    """The request is sent whole, then the socket is closed (FIN) or reset (RST) at once:
    the router may or may not have admitted it — either way one line each, and whatever it
    admitted is billed exactly as the lines say."""
    window = quiesce(router)
    n = 6
    for i in range(n):
        tag = new_tag()
        with connect(router.url) as sock:
            sock.sendall(http_request(router.url, router.key, chat_body(f"Bye {i} [tag={tag}] [delay=0.5]")))
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with sync_client(router.url, router.key) as client:
        paid = [run_sync(client, "plain") for _ in range(2)]  # so the costs are not all zero
    wait_until(lambda: len(router.chat_lines(window.start)) >= n + 2, 15, "a line per request")
    observed = collect(window, n + 2)
    gone = [line for line in observed.lines if line.get("request_id") not in {s.request_id for s in paid}]
    assert len(observed.lines) == n + 2, f"{len(observed.lines)} lines for {n + 2} requests"
    assert all(line.get("status") == 499 for line in gone), [line.get("status") for line in gone]
    billed = sum(line_cost(line) for line in observed.lines)
    assert observed.cost == billed
    assert observed.budget_spent == billed
    # Admitted ones are counted; the ones that never got past the body are not.
    assert 2 <= observed.requests <= n + 2


# ------------------------------------------------------------------- provider failures


def test_provider_failures_and_cut_streams_are_counted_once(router: Router, upstream: Upstream) -> None:
    """Every candidate fails (502), or the provider cuts the stream after it started: each is
    one line, counted once, billed as its line says."""
    window = quiesce(router)
    control = upstream.url + "/_control"
    seen: list[Seen] = []
    with sync_client(router.url, router.key) as client:
        seen += [run_sync(client, "plain") for _ in range(2)]
        statuses = []
        for i in range(3):
            response = httpx.post(
                router.url + "/v1/chat/completions",
                json=chat_body(f"Fail {i} [status=500]"),
                headers={"authorization": f"Bearer {router.key}"},
                timeout=30,
            )
            statuses.append(response.status_code)
            rid = response.headers.get(REQUEST_ID)
            seen.append(Seen("upstream_failed", "raw", new_tag(), "auto", rid, 502, expected=502))
        httpx.post(control, json={"mode": "stream_cut", "after_events": 3}).raise_for_status()
        try:
            for i in range(3):
                with httpx.stream(
                    "POST",
                    router.url + "/v1/chat/completions",
                    json=chat_body(f"Cut {i}", stream=True),
                    headers={"authorization": f"Bearer {router.key}"},
                    timeout=30,
                ) as r:
                    r.read()
                    seen.append(
                        Seen("cut", "raw", new_tag(), "auto", r.headers.get(REQUEST_ID), r.status_code)
                    )
        finally:
            httpx.post(control, json={"reset": True}).raise_for_status()
    assert statuses == [502, 502, 502]
    assert_agree(window, seen, upstream.app.tags)


# --------------------------------------------------------------- a slow state store


def test_clients_leave_while_the_router_waits_for_a_slow_store(
    upstream: Upstream, moto: MotoProcess, tmp_path: Path
) -> None:
    """DynamoDB 0.2 s away. Each raw client sends its request and hangs up as soon as the
    router has started talking to the store about it (admission: pacing, reservation), i.e.
    after routing — admitted, so it must be settled and logged once. (The store is slow only
    while the clients leave, so that reading the ledger does not take seconds.)"""
    direct = dynamodb_url(moto)
    with slow_proxy(moto.endpoint, 0.0) as proxy:
        store = dynamodb_url(moto, table_of(direct), proxy.endpoint)
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store)}
        rules = rules_for(upstream.url, **NO_BREAKERS)
        with running_router(tmp_path, rules, key=ROUTER_KEY, store_url=store, env=env) as router:
            window = quiesce(router)
            seen: list[Seen] = []
            proxy.delay_s = 0.2
            for i in range(3):
                tag = new_tag()
                before = proxy.arrived
                with connect(router.url) as sock:
                    body = chat_body(f"Impatient {i} [tag={tag}] [delay=1.0]", stream=bool(i % 2))
                    sock.sendall(http_request(router.url, router.key, body))
                    wait_until(lambda b=before: proxy.arrived > b, 10, "the router to call the store")
                seen.append(Seen("raw_close", "raw", tag, "auto"))
            with sync_client(router.url, router.key) as client:
                seen += [run_sync(client, b) for b in ("plain", "stream_parse")]
            proxy.delay_s = 0.0
            # The raw clients left after the router called the store for them: past routing.
            assert_agree(window, seen, {*upstream.app.tags, *(s.tag for s in seen)})


def _lock_sqlite(path: Path) -> subprocess.Popen[str]:
    """Another process holding SQLite's write lock until it reads a line on stdin."""
    code = (
        "import sqlite3, sys\n"
        f"conn = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "conn.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "conn.execute('COMMIT')\n"
    )
    locker = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None
    assert locker.stdout.readline().strip() == "locked"
    return locker


def test_clients_leave_while_another_process_locks_sqlite(upstream: Upstream, tmp_path: Path) -> None:
    """Requests reach the provider; then another process takes SQLite's write lock; then the
    clients hang up (raw sockets) or read one chunk and leave (SDK streams): the router's
    settles queue behind the lock. Released, everything settles, once."""
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY, "TIER_ROUTER_STORE_TIMEOUT_S": "10"}
    rules = rules_for(upstream.url, **NO_BREAKERS)
    store = sqlite_url(tmp_path)
    with running_router(tmp_path, rules, key=ROUTER_KEY, store_url=store, env=env) as router:
        window = quiesce(router)
        app = upstream.app
        socks, seen = [], []
        for i in range(3):
            tag = new_tag()
            sock = connect(router.url)
            sock.sendall(http_request(router.url, router.key, chat_body(f"Locked {i} [tag={tag}] [delay=3]")))
            socks.append(sock)
            seen.append(Seen("raw_close", "raw", tag, "auto"))
        wait_until(lambda: all(s.tag in app.tags for s in seen), 10, "the provider to have every request")
        disconnects = app.disconnects
        locker = _lock_sqlite(tmp_path / "state.db")
        try:
            for sock in socks:
                sock.close()
            # The router noticed (it hung up on the provider): its settles now wait on the lock.
            wait_until(lambda: app.disconnects >= disconnects + len(socks), 10, "the router to hang up")
        finally:
            assert locker.stdin is not None
            locker.stdin.write("release\n")
            locker.stdin.flush()
            locker.wait(timeout=10)
        with sync_client(router.url, router.key) as client:
            seen += [run_sync(client, b) for b in ("plain", "first_chunk", "stream_iter")]
        assert_agree(window, seen, upstream.app.tags)


# ------------------------------------------------------------------- concurrency on one key


def test_concurrent_sdk_mix_over_keep_alive_connections(router: Router, upstream: Upstream) -> None:
    """One sync client shared by 16 threads (its pool reuses connections): every behaviour,
    so a connection closed by one request's early exit is never mistaken for another's."""
    window = quiesce(router)
    plan = ["plain", "stream_parse", "first_chunk", "stream_iter", "stream_end"] * 4
    with sync_client(router.url, router.key) as client, ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda b: run_sync(client, b), plan))
    assert_agree(window, seen, upstream.app.tags)


# ------------------------------------------------------------------- the budget cap


def test_a_burst_against_a_small_budget_cap(upstream: Upstream, tmp_path: Path) -> None:
    """30 concurrent requests against a cap a few of them fill: some are refused (429),
    some streams are cut. The admitted ones are billed once each; once idle, every
    reservation is settled (committed == spent) and spent == ledger == lines."""
    rules = rules_for(upstream.url, budgets={"daily_usd": 0.002}, **NO_BREAKERS)
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
    with running_router(tmp_path, rules, key=ROUTER_KEY, store_url=sqlite_url(tmp_path), env=env) as router:
        window = quiesce(router)

        async def burst() -> list[Seen]:
            limits = httpx.Limits(max_connections=30, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                return list(await asyncio.gather(*(_capped(http, router, i) for i in range(30))))

        seen = asyncio.run(burst())
        refused = sum(s.status == 429 for s in seen)
        assert 0 < refused < len(seen), f"{refused} of {len(seen)} refused: the cap proves nothing"
        assert_agree(window, seen, upstream.app.tags)


async def _capped(http: httpx.AsyncClient, router: Router, index: int) -> Seen:
    tag = new_tag()
    stream = index % 2 == 1
    body = chat_body(f"Capped {index} [tag={tag}] [drip=0.01]", stream=stream)
    body["max_tokens"] = 50  # keeps each reservation small enough that several fit
    seen = Seen("random_cut" if stream else "plain", "raw", tag, "auto")
    headers = {"authorization": f"Bearer {router.key}"}
    async with http.stream("POST", router.url + "/v1/chat/completions", json=body, headers=headers) as r:
        seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
        if r.status_code != 200:
            seen.expected = r.status_code if r.status_code == 429 else 200
            seen.behaviour = "refused"
            await r.aread()
        elif stream:
            async for _ in r.aiter_raw():
                if index % 4 == 1:
                    break  # every other stream leaves after its first bytes
        else:
            await r.aread()
            seen.header_cost = header_cost(r.headers)
    return seen
