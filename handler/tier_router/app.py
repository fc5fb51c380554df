"""The ASGI app: routes, and the one place every request begins and ends.

One app everywhere: uvicorn locally (`tier-router serve`), Mangum on Lambda (buffered), or
uvicorn behind the Lambda Web Adapter for true streaming. `RouterApp.__call__` gives every
HTTP request its id (the `x-router-request-id` header of whatever response goes out), runs
it, and in its `finally` hands the request to `lifecycle.finish` — exactly one settle and one
log line, whatever happened. Everything that can be built once is built in `gateway`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from tier_router import embeddings, endpoints
from tier_router.errors import APIError, ClientGone
from tier_router.gateway import Gateway
from tier_router.lifecycle import Exchange
from tier_router.request_line import CHAT_PATHS, EMBEDDINGS_PATHS, Outcome
from tier_router.responses import error_response
from tier_router.settings import Settings

log = logging.getLogger("tier_router")
REQUEST_ID_HEADER = b"x-router-request-id"


class RouterApp(Starlette):
    """Starlette, with the request lifecycle around every HTTP request, and one shortcut:
    `POST` chat completions — the only hot path — goes straight to its endpoint instead of
    through Starlette's middleware, routing and exception layers (several nested ASGI calls
    and wrapped `send`s per request). Every other path, and other methods on these paths
    (405), take the normal Starlette route — and so does everything once middleware has been
    added with `add_middleware`, so that middleware sees every request.
    """

    gateway: Gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        lifecycle = self.gateway.lifecycle
        exchange = lifecycle.begin(scope)
        started = False
        request_id = exchange.request_id.encode()

        async def send_with_id(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                exchange.line.status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            if self.user_middleware or scope["method"] != "POST" or route_path(scope) not in CHAT_PATHS:
                scope[endpoints.EXCHANGE] = exchange
                await super().__call__(scope, receive, send_with_id)
            else:
                scope["app"] = self
                response = await self._chat(Request(scope, receive, send), exchange)
                if response is not None:
                    await response(scope, receive, send_with_id)
        except (ClientDisconnect, OSError):  # the client left while the answer was being sent
            exchange.ended(Outcome.CLIENT_GONE)
        except asyncio.CancelledError:  # the server's cancellation (shutdown), not the client's
            if exchange.line.outcome is None:
                exchange.ended(Outcome.CANCELLED)
            raise
        finally:
            if exchange.line.outcome is None:
                status = exchange.line.status
                if not started:
                    exchange.ended(Outcome.CLIENT_GONE, 499)
                else:  # a Starlette route answered
                    exchange.ended(
                        Outcome.OK if status < 400 else Outcome.ERROR if status >= 500 else Outcome.REFUSED
                    )
            await lifecycle.finish(exchange, scope)

    async def _chat(self, request: Request, exchange: Exchange) -> Response | None:
        try:
            return await endpoints.chat(request, self.gateway, exchange)
        except ClientGone:  # gone while sending its body: nobody to answer
            exchange.ended(Outcome.CLIENT_GONE, 499)
            return None
        except APIError as exc:
            return refused(exchange, exc)
        except Exception as exc:  # the same net as Starlette's ServerErrorMiddleware
            return unexpected(request, exc)


def route_path(scope: Any) -> str:
    """The path below `root_path`, as Starlette's router matches it (its private
    `starlette._utils.get_route_path`; tests/test_app.py holds the two equal)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def refused(exchange: Exchange, exc: APIError) -> Response:
    if exchange.line.outcome is None:
        exchange.ended(Outcome.REFUSED)
    exchange.line.error = exc.code
    return error_response(exc)


def unexpected(request: Request, exc: Exception) -> Response:
    """A logged 500 (the request line's outcome follows from the status: `error`)."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        APIError(500, "The router hit an internal error; it has been logged.", type="server_error")
    )


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return refused(request.scope[endpoints.EXCHANGE], exc)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    request.scope[endpoints.EXCHANGE].ended(Outcome.CLIENT_GONE, 499)
    return Response(status_code=499)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: "Unknown path.", 405: "Method not allowed."}.get(status, "Request failed.")
    return error_response(APIError(status, f"{message} ({request.method} {request.url.path})"))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    return unexpected(request, exc)


async def feedback(request: Request) -> Response:
    """POST /v1/feedback (`quality.feedback`, imported by the first feedback request: the chat
    path does not need it, docs/coldstart.md)."""
    from tier_router.quality.feedback import feedback as record_feedback

    return await record_feedback(request)


def create_app(settings: Settings | None = None, **gateway_options: Any) -> RouterApp:
    settings = settings or Settings.from_env()
    gateway = Gateway(settings, **gateway_options)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.drain()  # SIGTERM too: pending settles finish, the log is flushed

    app = RouterApp(
        routes=[
            *(Route(path, endpoints.chat_route, methods=["POST"]) for path in CHAT_PATHS),
            *(Route(path, embeddings.embeddings, methods=["POST"]) for path in EMBEDDINGS_PATHS),
            Route("/v1/route/explain", endpoints.explain, methods=["POST"]),
            Route("/v1/feedback", feedback, methods=["POST"]),
            Route("/v1/models", endpoints.models, methods=["GET"]),
            Route("/v1/models/{model:path}", endpoints.model, methods=["GET"]),
            Route("/v1/router/status", endpoints.status, methods=["GET"]),
            Route("/healthz", endpoints.healthz, methods=["GET"]),
            Route("/readyz", endpoints.readyz, methods=["GET"]),
        ],
        exception_handlers={
            APIError: on_api_error,
            ClientGone: on_client_gone,
            404: on_http_exception,
            405: on_http_exception,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = app.gateway = gateway
    return app
