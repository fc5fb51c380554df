"""The floor: the cheapest proxy this stack can make (Starlette + one shared httpx.AsyncClient).

Why it exists: the router's overhead is judged against this, not against zero. Whatever the floor
costs is the price of uvicorn + Starlette + httpx themselves; anything the router adds above it is
ours to justify. So it does no parsing and no logic: body in, body out, stream or not (decided by the
upstream's content-type, not by reading the request).

    .venv/bin/python bench/floor_proxy.py --upstream http://127.0.0.1:9001/v1 --port 9002
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

# Generous pool: at -c32 a keep-alive pool smaller than the client count churns connections and
# would make the floor look worse than it is. The router should be configured at least as well.
LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def make_app(upstream: str) -> Starlette:
    """``upstream`` is the base URL, e.g. ``http://127.0.0.1:9001/v1``."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream, limits=LIMITS, timeout=TIMEOUT) as client:
            app.state.client = client
            yield

    async def chat_completions(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.client
        headers = {
            "content-type": request.headers.get("content-type", "application/json"),
            "authorization": request.headers.get("authorization", ""),
        }
        outgoing = client.build_request(
            "POST", "/chat/completions", content=await request.body(), headers=headers
        )
        reply = await client.send(outgoing, stream=True)
        content_type = reply.headers.get("content-type", "application/json")
        if content_type.startswith("text/event-stream"):
            return StreamingResponse(
                reply.aiter_raw(),
                status_code=reply.status_code,
                media_type=content_type,
                background=BackgroundTask(reply.aclose),
            )
        try:
            body = await reply.aread()
        finally:
            await reply.aclose()
        return Response(body, status_code=reply.status_code, media_type=content_type)

    return Starlette(
        routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9001/v1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream.rstrip("/")),
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
