"""Breaker state shared through SQLite by real `tier-router serve` processes.

The fakes (A, B) run in this process; each router is a subprocess on 127.0.0.1 reading a
temporary rules file (tier `fast` = [a, b], key from FAKE_KEY, set in its environment) and
`--store sqlite:///<tmp>/state.db`. Every process is stopped at teardown, killed if it lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.loopback import free_port
from tests.support.router_process import tier_router_command

pytestmark = pytest.mark.integration

THRESHOLD = 3
WINDOW_S = 30.0
CACHE_TTL_S = 1.0  # the default: each process may serve a view up to 1 s old
KEY_ENV, KEY_VALUE = "FAKE_KEY", "sk-shared-state-SECRET777"
STARTUP_S = 30.0


def breakers(recovery_s: float) -> dict[str, Any]:
    """Default cache (1 s); long recovery unless a test needs a probe."""
    return {"failure_threshold": THRESHOLD, "window_s": WINDOW_S, "recovery_s": recovery_s}


@dataclass
class Served:
    model: str
    attempts: int


@dataclass
class Server:
    """One `tier-router serve` process (and its workers, in the same process group)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def chat(self, text: str = "hello") -> Served:
        """One request on a fresh connection (with --workers N, any worker may take it)."""
        with httpx.Client(timeout=15.0) as fresh:
            response = fresh.post(
                self.url + "/v1/chat/completions",
                json={"model": "fast", "messages": [{"role": "user", "content": text}]},
            )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
        return Served(response.headers["x-router-model"], int(response.headers["x-router-attempts"]))

    def breaker(self, model: str = "a") -> dict[str, str]:
        response = httpx.get(self.url + "/v1/router/status", timeout=15.0)
        response.raise_for_status()
        return response.json()["breakers"][model]

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), then SIGKILL the whole group if anything lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we created: this server only
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def workers(self) -> list[int]:
        """Worker process ids: the supervisor's spawned children (not multiprocessing's
        resource tracker). Linux only."""
        children: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            children += [int(pid) for pid in task.read_text().split()]
        workers = []
        for pid in children:
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return workers

    def read_calls(self) -> dict[int, int]:
        """Read system calls made so far by each worker (/proc/<pid>/io `syscr`): a worker that
        served a request made several (socket, SQLite); an idle one makes ~4 a second."""
        calls = {}
        for pid in self.workers():
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("syscr:"):
                    calls[pid] = int(line.split()[1])
        return calls


@pytest.fixture
def serve(tmp_path: Path, fakes: Any) -> Iterator[Callable[..., Server]]:
    """`serve(rules, workers=1)`: start `tier-router serve` on the test's SQLite file."""
    servers: list[Server] = []
    db = tmp_path / "state.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIER_ROUTER_")}
    env[KEY_ENV] = KEY_VALUE

    def start(rules: dict[str, Any], workers: int = 1) -> Server:
        rules_path = tmp_path / f"rules-{len(servers)}.yaml"
        rules_path.write_text(yaml.safe_dump(rules))
        port = free_port()
        log = tmp_path / f"server-{len(servers)}.log"
        command = [
            *tier_router_command(),
            "serve",
            "--rules", str(rules_path),
            "--store", f"sqlite:///{db}",
            "--port", str(port),
            "--workers", str(workers),
            "--log-level", "warning",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = Server(proc, f"http://127.0.0.1:{port}", log)
        servers.append(server)
        wait_until_up(server, workers)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def wait_until_up(server: Server, workers: int) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"tier-router serve exited ({server.proc.returncode}):\n{server.log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"tier-router serve did not answer /healthz in {STARTUP_S}s:\n{server.log.read_text()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            up = httpx.get(server.url + "/healthz", timeout=1.0).status_code == 200
            if up and (workers == 1 or len(server.workers()) >= workers):
                return
        time.sleep(0.05)


@pytest.fixture
def rules(make_rules) -> Callable[[float], dict[str, Any]]:
    def make(recovery_s: float = 60.0) -> dict[str, Any]:
        return make_rules(breakers=breakers(recovery_s))

    return make


@pytest.fixture
def open_through(avoid_window_edge) -> Callable[[Server, Any], None]:
    """`open_through(server, fakes)`: A answers 503; THRESHOLD requests through `server` (B serves
    each) open model `a` — none of them across a failure-window edge."""

    def open_(server: Server, fakes: Any) -> None:
        avoid_window_edge(WINDOW_S)
        _open_through(server, fakes)

    return open_


def _open_through(server: Server, fakes: Any) -> None:
    fakes.a.control(mode="status", status=503)
    before = fakes.a.requests
    for _ in range(THRESHOLD):
        assert server.chat() == Served("b", 2)
    assert fakes.a.requests == before + THRESHOLD
    assert server.breaker("a") == {"provider": "closed", "model": "open"}


# ------------------------------------------------------------------------------------------ tests


def test_an_open_breaker_survives_a_restart(serve, rules, fakes, open_through) -> None:
    config = rules(recovery_s=60.0)
    first = serve(config)
    open_through(first, fakes)
    first.stop()
    assert first.proc.returncode is not None

    second = serve(config)  # a new process, nothing cached: the state comes from the SQLite file

    assert second.chat() == Served("b", 1)
    assert fakes.a.requests == THRESHOLD  # A received nothing from the new process
    assert second.breaker("a")["model"] == "open"


def test_a_breaker_opened_by_one_process_is_skipped_by_another(serve, rules, fakes, open_through) -> None:
    config = rules(recovery_s=60.0)
    one, two = serve(config), serve(config)
    assert two.chat() == Served("a", 1)  # process 2 has seen A closed (and cached it)

    open_through(one, fakes)
    time.sleep(CACHE_TTL_S + 0.1)  # process 2's cached view may be this old, no older

    assert two.chat() == Served("b", 1)
    assert fakes.a.requests == 1 + THRESHOLD
    assert two.breaker("a")["model"] == "open"


def test_two_workers_both_skip_a_after_it_opens(serve, rules, fakes, avoid_window_edge) -> None:
    server = serve(rules(recovery_s=60.0), workers=2)
    assert len(server.workers()) == 2
    avoid_window_edge(WINDOW_S)
    fakes.a.control(mode="status", status=503)
    for _ in range(20):  # whichever worker takes each request, failures add up in the store
        if fakes.a.requests >= THRESHOLD:
            break
        assert server.chat().model == "b"
    assert fakes.a.requests >= THRESHOLD
    time.sleep(CACHE_TTL_S + 0.1)  # every worker's cached view is now from after the opening
    assert server.breaker("a")["model"] == "open"
    opened_at = fakes.a.requests
    before = server.read_calls()

    results = [server.chat(f"fresh {i}") for i in range(20)]

    after = server.read_calls()
    assert results == [Served("b", 1)] * 20
    assert fakes.a.requests == opened_at
    busy = {pid: after[pid] - before[pid] for pid in before}
    assert all(calls >= 5 for calls in busy.values()), f"a worker served nothing: read calls {busy}"


def test_after_a_failed_probe_no_process_probes_again_before_recovery(
    serve, rules, fakes, open_through
) -> None:
    """Exactly one probe per recovery period, across processes. Process 2 last read the
    breaker as half-open (its cache, up to `cache_ttl_s` old); process 1 then probes, A fails,
    the breaker re-opens for a new recovery period. Process 2 must not send a second probe
    right away. (The failure mode: its stale half-open view finds the probe lease already
    released, and admits a second probe.) Recovery is 2 s, not 1: stores keep whole-second
    expiries, so a lease-based hold of under a second may legitimately round away."""
    config = rules(recovery_s=2.0)
    one, two = serve(config), serve(config)
    open_through(one, fakes)
    time.sleep(2.0 + 0.2)
    assert two.breaker("a")["model"] == "half_open"  # what process 2 now has cached

    assert one.chat() == Served("b", 2)  # process 1's probe: A still fails, the breaker re-opens
    assert fakes.a.requests == THRESHOLD + 1
    assert one.breaker("a")["model"] == "open"

    assert two.chat() == Served("b", 1), "a second probe within the new recovery period"
    assert fakes.a.requests == THRESHOLD + 1
