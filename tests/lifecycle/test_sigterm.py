"""SIGTERM to `tier-router serve` loses nothing: send N requests, wait for their answers,
SIGTERM at once — the process exits and stdout holds exactly N request lines (the access log
is buffered for up to 0.2 s and settling runs in the background when serving locally, so this
is what a deploy or a Ctrl-C in a container does to the last requests). The state store, read
afterwards with `tier-router status`, has settled every one of them.

Also with streams still running when the signal arrives: the server drains them, and each is
logged and settled once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.moto_process import MotoProcess
from tests.support.router_process import (
    REQUEST_ID,
    Ledger,
    Router,
    base_env,
    start_router,
    tier_router_command,
)
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

EXIT_TIMEOUT_S = 20.0


def launch(workdir: Path, upstream: Upstream) -> tuple[Router, str]:
    store = sqlite_url(workdir)
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
    router = start_router(workdir, rules_for(upstream.url), key=ROUTER_KEY, store_url=store, env=env)
    return router, store


def ask(router: Router, text: str, stream: bool) -> tuple[int, str | None, str]:
    """One chat request read to its end: (status, request id, body)."""
    payload: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": text}]}
    if stream:
        payload.update(stream=True, stream_options={"include_usage": True})
    headers = {"authorization": f"Bearer {router.key}"}
    with httpx.Client(timeout=30) as http:
        response = http.post(router.url + "/v1/chat/completions", json=payload, headers=headers)
    return response.status_code, response.headers.get(REQUEST_ID), response.text


def stored_ledger(workdir: Path, store: str, env: dict[str, str] | None = None) -> Ledger:
    """What the state store holds once the router is gone (`tier-router status --json`)."""
    done = subprocess.run(
        [
            *tier_router_command(),
            "status",
            "--json",
            "--rules",
            str(workdir / "router.yaml"),
            "--store",
            store,
        ],
        env=base_env({PROVIDER_KEY_ENV: PROVIDER_KEY, **(env or {})}),
        capture_output=True,
        timeout=60,
        check=False,
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr.decode()
    return Ledger.parse(json.loads(done.stdout))


CLEAN_EXIT = (0, -signal.SIGTERM)
"""uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status
says what ended it: -15 is a clean exit too (but note: no `atexit` handler runs then)."""


def stop(router: Router) -> int:
    router.proc.send_signal(signal.SIGTERM)
    try:
        return router.proc.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        router.proc.kill()
        router.proc.wait(timeout=5)
        pytest.fail(f"tier-router did not exit within {EXIT_TIMEOUT_S}s of SIGTERM")


def check_lines(router: Router, answers: list[tuple[int, str | None, str]]) -> list[dict[str, Any]]:
    assert all(status == 200 for status, _, _ in answers), [a[:2] for a in answers]
    ids = [rid for _, rid, _ in answers]
    assert all(ids), "answers without a request id"
    lines = router.chat_lines()
    counts = Counter(line.get("request_id") for line in lines)
    missing = [rid for rid in ids if counts[rid] == 0]
    doubled = {rid: n for rid, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} of {len(ids)} requests have no access-log line after SIGTERM"
    assert not doubled, f"lines written twice: {doubled}"
    assert len(lines) == len(ids), f"{len(lines)} chat lines for {len(ids)} requests"
    return lines


def test_sigterm_right_after_the_answers_flushes_every_line(upstream: Upstream, tmp_path: Path) -> None:
    router, store = launch(tmp_path, upstream)
    try:
        # All answered together (the provider holds each for 0.3 s), so their lines are
        # written, and buffered, in the same instant just before the signal.
        plan = [(f"Last words {i} [delay=0.3]", i % 3 == 0) for i in range(24)]
        with ThreadPoolExecutor(max_workers=len(plan)) as pool:
            answers = list(pool.map(lambda p: ask(router, *p), plan))
        code = stop(router)  # at once: no status poll, no wait
    finally:
        if router.alive():
            router.proc.kill()
    assert code in CLEAN_EXIT, router.stderr()[-3000:]
    lines = check_lines(router, answers)
    ledger = stored_ledger(tmp_path, store)
    assert ledger.requests == len(plan), f"the store settled {ledger.requests} of {len(plan)} requests"
    total = sum(line.get("cost_micro_usd") or 0 for line in lines)
    assert total > 0
    assert ledger.total == total
    assert ledger.budget_spent == total


def test_sigterm_while_streams_run_drains_and_records_them(upstream: Upstream, tmp_path: Path) -> None:
    router, store = launch(tmp_path, upstream)
    try:
        before = upstream.app.requests
        n = 6
        plan = [(f"Slow stream {i} [drip=0.08]", True) for i in range(n)]
        with ThreadPoolExecutor(max_workers=n) as pool:
            futures = [pool.submit(ask, router, *p) for p in plan]
            deadline = time.monotonic() + 10
            while upstream.app.requests - before < n and time.monotonic() < deadline:
                time.sleep(0.01)
            assert upstream.app.requests - before == n, "the streams never reached the provider"
            code = stop(router)
            answers = [f.result() for f in futures]
    finally:
        if router.alive():
            router.proc.kill()
    assert code in CLEAN_EXIT, router.stderr()[-3000:]
    lines = check_lines(router, answers)
    complete = [text for _, _, text in answers if text.rstrip().endswith("data: [DONE]")]
    assert len(complete) == n, "the server cut streams short instead of draining them"
    ledger = stored_ledger(tmp_path, store)
    assert ledger.requests == n
    assert ledger.total == sum(line.get("cost_micro_usd") or 0 for line in lines)


def test_sigterm_while_settles_wait_for_a_slow_store(
    upstream: Upstream, moto: MotoProcess, tmp_path: Path
) -> None:
    """Every answer is out, but settling (after the response) still waits on a store 0.3 s
    away: SIGTERM must let those settles finish and their lines be written."""
    direct = dynamodb_url(moto)
    with slow_proxy(moto.endpoint, 0.3) as proxy:
        store = dynamodb_url(moto, table_of(direct), proxy.endpoint)
        env = {PROVIDER_KEY_ENV: PROVIDER_KEY, **store_env(store)}
        router = start_router(tmp_path, rules_for(upstream.url), key=ROUTER_KEY, store_url=store, env=env)
        try:
            plan = [(f"Slow store {i}", i % 2 == 0) for i in range(8)]
            with ThreadPoolExecutor(max_workers=len(plan)) as pool:
                answers = list(pool.map(lambda p: ask(router, *p), plan))
            code = stop(router)
        finally:
            if router.alive():
                router.proc.kill()
    assert code in CLEAN_EXIT, router.stderr()[-3000:]
    lines = check_lines(router, answers)
    ledger = stored_ledger(tmp_path, direct, store_env(direct))
    assert ledger.requests == len(plan), f"the store settled {ledger.requests} of {len(plan)} requests"
    assert ledger.total == sum(line.get("cost_micro_usd") or 0 for line in lines)
