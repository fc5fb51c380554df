"""AWS Lambda entry point (Function URL or API Gateway HTTP API v2 events), and the scheduled
health probe (EventBridge).

`lifespan="off"`: with Mangum's default, startup/shutdown would run on every invocation.
The app, its rules and its shared httpx client are built at import (the init phase) and
reused by every warm invocation. Mangum buffers the response, so a `stream: true` request
gets its complete SSE body at once; see docs/aws.md for true streaming on Lambda. Each
request is settled and logged before Mangum returns (`lifecycle` never defers work on
Lambda); the log is flushed here so nothing stays buffered when the container freezes.

An EventBridge scheduled event (`{"source": "aws.events", ...}`, template.yaml's
`ProbeSchedule`) or `{"tier_router": "probe"}` (a manual `aws lambda invoke`) runs the health
probe instead (`tier_router.probe`): every provider checked once, recorded on the breakers in
the shared store, the results returned (and each unhealthy provider logged as a
`ProviderUnhealthy` event).
"""

import asyncio
from typing import Any

from mangum import Mangum

from tier_router.asgi import app
from tier_router.probe import probe_providers, summary

_mangum = Mangum(app, lifespan="off")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        if is_probe_event(event):
            return run_probe()
        return _mangum(event, context)
    finally:
        app.gateway.access_log.flush()


def is_probe_event(event: object) -> bool:
    return isinstance(event, dict) and (
        event.get("source") == "aws.events" or event.get("tier_router") == "probe"
    )


def run_probe() -> dict[str, Any]:
    """The probe on the app's own client, keys and breakers, on Mangum's event loop (where the
    shared client's pooled connections live)."""
    gateway = app.gateway
    board = gateway.breakers.board if gateway.breakers is not None else None
    loop = asyncio.get_event_loop()
    results = loop.run_until_complete(probe_providers(gateway.rules, gateway.client, gateway.keys, board))
    for result in results:
        if not result.healthy:
            gateway.access_log.event(
                "ProviderUnhealthy", provider=result.provider, outcome=str(result.outcome)
            )
    return summary(results)
