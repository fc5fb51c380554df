"""The real router, started the way a user starts it: `tier-router serve` in its own process.

stdout (the access log) goes to a file the test reads back; stderr (uvicorn, warnings) to
another. Every non-chat request the test itself sends (health checks, status polls) goes
through `Router.get`, which remembers the response's request id, so the chat lines of the
access log can be told apart from the test's own traffic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.loopback import free_port

REQUEST_ID = "x-router-request-id"
STARTUP_TIMEOUT_S = 20.0


def tier_router_command() -> list[str]:
    """The installed console script when there is one (what a user runs), else the module."""
    script = Path(sys.executable).with_name("tier-router")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tier_router.cli"]


def micro(usd: str | None) -> int:
    """A USD decimal string ("0.000123") as integer micro-dollars; exact or it raises."""
    if usd is None:
        return 0
    value = Decimal(usd) * 1_000_000
    if value != value.to_integral_value():
        raise ValueError(f"{usd!r} is not a whole number of micro-dollars")
    return int(value)


CODE_ENV = "LIFECYCLE_HANDLER_DIR"
"""Optional: a directory holding another `tier_router` package (e.g. an exported older commit's
`handler/`), put first on the children's PYTHONPATH — to check that these tests fail on code
known to break the promise. Unset: the installed (editable) package."""


EXTRA_ENV = "LIFECYCLE_ROUTER_ENV"
"""Optional: a JSON object of settings added to every child router's environment, to run the
same checks on another configuration, e.g. '{"TIER_ROUTER_BACKGROUND_SETTLE": "0"}'."""


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without any TIER_ROUTER_*/AWS_* setting the test did not ask for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIER_ROUTER_", "AWS_"))}
    code = os.environ.get(CODE_ENV)
    if code:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code, env.get("PYTHONPATH")) if p)
    env.update(extra)
    env.update(json.loads(os.environ.get(EXTRA_ENV) or "{}"))
    return env


@dataclass(frozen=True)
class Ledger:
    """What `/v1/router/status` says, in micro-dollars."""

    requests: int
    total: int
    budget_spent: int | None
    budget_committed: int | None
    raw: dict[str, Any]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Ledger:
        spend = data["spend"]
        budget = (data.get("budgets") or {}).get("global")
        return cls(
            requests=int(spend["requests"]),
            total=micro(spend["total_usd"]),
            budget_spent=micro(budget["spent_usd"]) if budget else None,
            budget_committed=micro(budget["committed_usd"]) if budget else None,
            raw=data,
        )

    def key(self) -> tuple[int, int, int | None, int | None]:
        return (self.requests, self.total, self.budget_spent, self.budget_committed)


@dataclass
class Router:
    url: str
    key: str
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    own_ids: set[str] = field(default_factory=set)
    """Request ids of the test's own non-chat requests (status polls, health checks)."""
    own_unidentified: int = 0
    """The test's own non-chat responses that came back WITHOUT a request id."""

    # -- the test's own requests ---------------------------------------------------------

    def get(self, path: str, *, auth: bool = True, timeout: float = 5.0) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.key}"} if auth else {}
        response = httpx.get(self.url + path, headers=headers, timeout=timeout)
        self.remember(response.headers)
        return response

    def remember(self, headers: Mapping[str, str]) -> None:
        rid = headers.get(REQUEST_ID)
        if rid:
            self.own_ids.add(rid)
        else:
            self.own_unidentified += 1

    def ledger(self) -> Ledger:
        response = self.get("/v1/router/status")
        response.raise_for_status()
        return Ledger.parse(response.json())

    # -- the access log ------------------------------------------------------------------

    def stdout_lines(self) -> list[str]:
        """Complete lines written so far (a line still being written is left for later)."""
        text = self.stdout_path.read_text(encoding="utf-8", errors="replace")
        lines = text.split("\n")
        return lines[:-1]

    def request_lines(self) -> list[dict[str, Any]]:
        """Every `"event": "request"` JSON line, in order."""
        out = []
        for line in self.stdout_lines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == "request":
                    out.append(record)
        return out

    def chat_lines(self, since: int = 0) -> list[dict[str, Any]]:
        """Request lines from index `since` on that are not the test's own status/health calls."""
        return [r for r in self.request_lines()[since:] if r.get("request_id") not in self.own_ids]

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    # -- lifetime ------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            raise


def start_router(
    workdir: Path,
    rules: dict[str, Any],
    *,
    key: str,
    store_url: str,
    env: Mapping[str, str] | None = None,
    name: str = "router",
    log_level: str = "warning",
) -> Router:
    """`tier-router serve --port P --rules R --store S --log-level L` with router key `key`
    (as TIER_ROUTER_API_KEYS); returns once `/healthz` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    rules_path = workdir / f"{name}.yaml"
    # YAML, not JSON: a rules dict read with PyYAML may hold a True key (YAML 1.1 reads `on:` as
    # True), which JSON would turn into the string "true"; YAML writes it back as the router reads it.
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    stdout_path, stderr_path = workdir / f"{name}.stdout", workdir / f"{name}.stderr"
    port = free_port()
    command = [
        *tier_router_command(),
        "serve",
        "--port",
        str(port),
        "--rules",
        str(rules_path),
        "--store",
        store_url,
        "--log-level",
        log_level,
    ]
    full_env = base_env({"TIER_ROUTER_API_KEYS": key, **(env or {})})
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=full_env, cwd=workdir)
    router = Router(f"http://127.0.0.1:{port}", key, proc, stdout_path, stderr_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tier-router exited during start-up ({proc.returncode}):\n{router.stderr()}")
        try:
            if router.get("/healthz", auth=False, timeout=1.0).status_code == 200:
                return router
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            router.stop(signal.SIGKILL)
            raise TimeoutError(f"tier-router did not answer /healthz within {STARTUP_TIMEOUT_S}s")
        time.sleep(0.05)


@contextlib.contextmanager
def running_router(workdir: Path, rules: dict[str, Any], **options: Any) -> Iterator[Router]:
    router = start_router(workdir, rules, **options)
    try:
        yield router
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            router.stop()
