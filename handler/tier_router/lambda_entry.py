"""AWS Lambda entry point (Function URL or API Gateway HTTP API v2 events).

`lifespan="off"`: with Mangum's default, startup/shutdown would run on every invocation.
The app, its rules and its shared httpx client are built at import (the init phase) and
reused by every warm invocation. Mangum buffers the response, so a `stream: true` request
gets its complete SSE body at once; see docs/aws.md for true streaming on Lambda. Each
request is settled and logged before Mangum returns (`lifecycle` never defers work on
Lambda); the log is flushed here so nothing stays buffered when the container freezes.
"""

from typing import Any

from mangum import Mangum

from tier_router.asgi import app

_mangum = Mangum(app, lifespan="off")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return _mangum(event, context)
    finally:
        app.gateway.access_log.flush()
