"""Post-response work (spend settlement, the request line) runs off the connection when
serving locally, and inline under Mangum (a frozen Lambda would never finish it)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tier_router.app import create_app
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

DEMO = unjudged_demo()
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def test_background_settle_finishes_after_the_response() -> None:
    app = create_app(Settings(rules_path=DEMO, background_settle=True, log_requests=False))
    ledger = app.state.gateway.spend.ledger

    async def run() -> tuple[int, int, int]:
        async with asgi_client(app) as client:
            response = await client.post("/v1/chat/completions", json=BODY)
            assert response.status_code == 200
            pending = app.gateway.lifecycle.drainer.pending
            in_flight = len(pending)
            await asyncio.gather(*pending)
            return in_flight, (await ledger.today()).requests, len(pending)

    in_flight, requests, left = asyncio.run(run())
    assert in_flight == 1  # the settlement was still pending when the response arrived
    assert requests == 1  # ...and it completed
    assert left == 0


def test_lambda_settles_inline_even_in_background_mode(monkeypatch) -> None:
    monkeypatch.setenv("TIER_ROUTER_RULES", str(DEMO))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    monkeypatch.setenv("TIER_ROUTER_BACKGROUND_SETTLE", "1")
    import importlib
    import sys

    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)
    entry = importlib.import_module("tier_router.lambda_entry")
    event = json.loads(
        (Path(__file__).parent / "lambda_events" / "function_url_chat_base64.json").read_text()
    )
    result = entry.lambda_handler(event, type("Ctx", (), {"aws_request_id": "r-1"})())
    assert result["statusCode"] == 200
    assert not entry.app.gateway.lifecycle.drainer.pending  # nothing left running when it returned
    assert not entry.app.state.gateway.access_log._pending  # and no log line left buffered
    report = asyncio.run(entry.app.gateway.spend.ledger.today())
    assert report.requests == 1
