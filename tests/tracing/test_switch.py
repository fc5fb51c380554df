"""Tracing is on only when asked (`TIER_ROUTER_OTEL=1`): off, nothing of OpenTelemetry is
imported, by the app or the Lambda handler, even serving a request; on without the extra,
the router refuses to start and says what to install. Fresh processes: this one has
OpenTelemetry imported already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo

ROOT = Path(__file__).resolve().parents[2]
SERVE_ONE = """
import asyncio, json, sys
import httpx
import tier_router.lambda_entry
from tier_router.app import create_app
from tier_router.settings import Settings

app = create_app(Settings.from_env())

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        reply = await client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
    await app.gateway.drain()

asyncio.run(main())
traced = [m for m in sys.modules if m.split(".")[0] == "opentelemetry" or m.startswith("tier_router.tracing")]
print(json.dumps(sorted(traced)))
"""
WITHOUT_OTEL = "import sys; sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIER_ROUTER_"))}
    environ.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "handler"), str(ROOT)]),
        TIER_ROUTER_RULES=str(unjudged_demo()),
        TIER_ROUTER_STORE="memory://",
        TIER_ROUTER_LOG_REQUESTS="0",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def test_off_nothing_of_opentelemetry_is_imported() -> None:
    """Not even the router's own tracing package: the cold start imports what it did before."""
    done = run(SERVE_ONE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_on_it_is_imported() -> None:
    """The check above can fail: the same request with tracing on imports the SDK."""
    done = run(SERVE_ONE, TIER_ROUTER_OTEL="1", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout.splitlines()[-1])
    assert "opentelemetry.sdk.trace" in imported


def test_on_without_the_extra_the_app_refuses_to_start() -> None:
    done = run(WITHOUT_OTEL + SERVE_ONE, TIER_ROUTER_OTEL="1")
    assert done.returncode != 0
    assert "ConfigError" in done.stderr
    assert "TIER_ROUTER_OTEL is on but OpenTelemetry is not installed" in done.stderr
    assert "pip install 'tier-router[otel]'" in done.stderr


def test_on_without_the_extra_serve_says_what_to_install(tmp_path: Path) -> None:
    code = WITHOUT_OTEL + (
        "from tier_router.cli import main\n"
        f"raise SystemExit(main(['serve', '--rules', {str(unjudged_demo())!r}, '--port', '9']))\n"
    )
    done = run(code, TIER_ROUTER_OTEL="1")
    assert done.returncode == 2
    assert "pip install 'tier-router[otel]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"TIER_ROUTER_OTEL": "1"}, True),
        ({"TIER_ROUTER_OTEL": "true"}, True),
        ({"TIER_ROUTER_OTEL": "0"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),  # configures, never enables
        ({"TIER_ROUTER_OTEL": "1", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_switch(environ: dict[str, str], on: bool) -> None:
    assert Settings.from_env(environ).otel is on


def test_service_name_and_endpoint() -> None:
    plain = Settings.from_env({})
    assert plain.otel_service_name == "tier-router"
    assert plain.otel_endpoint is None
    named = Settings.from_env(
        {"OTEL_SERVICE_NAME": "router-eu", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}
    )
    assert named.otel_service_name == "router-eu"
    assert named.otel_endpoint == "http://c:4318/v1/traces"
    traces = Settings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x"}
    )
    assert traces.otel_endpoint == "https://t/x"  # the traces endpoint as it is, as the SDK does


def test_settings_reach_workers() -> None:
    settings = Settings.from_env({"TIER_ROUTER_OTEL": "1", "OTEL_SERVICE_NAME": "w"})
    again = Settings.from_json(settings.to_json(), {})
    assert (again.otel, again.otel_service_name) == (True, "w")
