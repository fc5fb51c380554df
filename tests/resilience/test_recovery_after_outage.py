"""Issue 14: a provider that fails for a while and then recovers gets traffic back within
seconds — and while it is down, it is probed one request at a time, across routers.

Two routers (`create_app` under uvicorn, each with its own breaker board and the default 1 s
cache) share one SQLite file, in front of two fake providers on 127.0.0.1: `primary` (first in
the tier) and `backup`. Four clients send steady traffic, two per router. Primary answers 503
(each after 0.2 s, so overlapping probes would show) for 6 s, then recovers. Breakers: 3
failures within 30 s open one; recovery starts at 1 s, doubles per failed probe, at most 2 s
(the defaults, 5 s / x2 / 60 s, with time compressed).

The old breakers (clock-aligned windows, a fixed 30 s recovery: `recovery_s: 30`, what the
rules file used to default to) kept primary out for ~24 s after it had recovered.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread
from tests.support.stack import Upstream, scripted_upstream, sqlite_url

pytestmark = pytest.mark.integration

KEY_ENV, KEY = "RECOVERY_KEY", "sk-recovery-SECRET-0123456789"
OUTAGE_S = 6.0
FAIL_LATENCY_S = 0.2
BREAKERS: dict[str, Any] = {
    "failure_threshold": 3,
    "window_s": 30,
    "recovery_s": 1.0,
    "recovery_backoff": 2.0,
    "recovery_max_s": 2.0,
}
BACK_WITHIN_S = 2 * BREAKERS["recovery_s"] + FAIL_LATENCY_S + 0.5
"""Twice the first recovery period, plus one failing probe's latency and request pacing."""
SETTLE_S = 1.5
"""After the outage starts: the breaker is open and both routers' caches have seen it. Every
request primary gets after that, until it recovers, is a probe."""
CLIENTS_PER_ROUTER = 2
PACE_S = 0.02


def rules(primary: str, backup: str) -> dict[str, Any]:
    def provider(url: str) -> dict[str, Any]:
        timeouts = {"connect": 1.0, "read": 3.0, "total": 3.0, "first_token": 3.0, "stall": 1.0}
        return {"kind": "openai", "base_url": url + "/v1", "api_key_env": KEY_ENV, "timeouts": timeouts}

    price = {"input": 1.0, "output": 2.0}
    return {
        "version": 1,
        "providers": {"primary": provider(primary), "backup": provider(backup)},
        "models": {
            "main": {"provider": "primary", "id": "main-1", "price": price},
            "spare": {"provider": "backup", "id": "spare-1", "price": price},
        },
        "tiers": {"fast": ["main", "spare"]},
        "default_tier": "fast",
        "breakers": BREAKERS,
    }


@dataclass(frozen=True)
class Answer:
    done: float  # time.monotonic() when the answer arrived
    status: int
    model: str | None


class Traffic:
    """Clients posting chat requests in a loop until stopped, each answer kept."""

    def __init__(self, urls: list[str]) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url,), daemon=True)
            for url in urls
            for _ in range(CLIENTS_PER_ROUTER)
        ]

    def _run(self, url: str) -> None:
        body = {"model": "fast", "messages": [{"role": "user", "content": "hello"}]}
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                response = client.post(url + "/v1/chat/completions", json=body)
                model = response.headers.get("x-router-model")
                self.answers.append(Answer(time.monotonic(), response.status_code, model))
                time.sleep(PACE_S)

    def served_by(self, model: str, after: float) -> float | None:
        """When `model` first answered after `after` (monotonic), or None."""
        times = [a.done for a in list(self.answers) if a.model == model and a.done > after]
        return min(times, default=None)

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=15)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Upstream, list[str]]]:
    """Primary and backup fakes, and two routers sharing one SQLite file."""
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(scripted_upstream("primary"))
        backup = stack.enter_context(scripted_upstream("backup"))
        settings = app_settings(store_url=sqlite_url(tmp_path), log_requests=False)
        doc = rules(primary.url, backup.url)
        keys = {KEY_ENV: KEY}
        apps = [build_app(doc, settings=settings, keys=keys, client=production_client()) for _ in "12"]
        routers = [stack.enter_context(serve_in_thread(app)) for app in apps]
        yield primary, routers


def test_a_recovered_provider_gets_traffic_back_within_seconds(stack: tuple[Upstream, list[str]]) -> None:
    primary, routers = stack
    fake = primary.app.inner
    with Traffic(routers).running() as traffic:
        start = time.monotonic()
        deadline = start + 5.0
        while traffic.served_by("main", after=start) is None:  # both routers up, primary serving
            assert time.monotonic() < deadline, "primary never served before the outage"
            time.sleep(0.05)

        down = time.monotonic()
        fake.configure({"mode": "status", "status": 503, "latency_ms": int(FAIL_LATENCY_S * 1000)})
        time.sleep(OUTAGE_S)
        up = time.monotonic()
        fake.configure({"mode": "ok"})
        give_up = up + BACK_WITHIN_S + 2.0
        while (back := traffic.served_by("main", after=up)) is None and time.monotonic() < give_up:
            time.sleep(0.05)

    assert back is not None, f"primary got no traffic within {give_up - up:.1f} s of recovering"
    assert back - up <= BACK_WITHIN_S, f"primary served again only {back - up:.2f} s after recovering"

    probes = [(at, in_flight) for at, in_flight in primary.app.arrivals if down + SETTLE_S <= at < up]
    assert probes, "primary was never probed while down"
    assert max(in_flight for _, in_flight in probes) == 1, f"probes overlapped: {probes}"
    # Backing off: 1 s, then 2 s between probes (each after a 0.2 s failure), not one per second.
    assert len(probes) <= 4, f"{len(probes)} probes in {up - down - SETTLE_S:.1f} s"
    assert {a.status for a in traffic.answers} == {200}, "a client saw an error: backup should serve"
