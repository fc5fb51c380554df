"""The ASGI app: OpenAI-compatible HTTP surface over the decision engine and the forwarder.

One app everywhere: uvicorn locally (`tier-router serve`), Mangum on Lambda (buffered), or
uvicorn behind the Lambda Web Adapter for true streaming. Everything that can be built once
(rules, the shared httpx client, adapters, settings) is built in `Gateway.__init__`, at
import time on Lambda, so a warm invocation does only per-request work.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from starlette._utils import get_route_path  # what Starlette's own router matches on
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tier_router.admission import CACHED_MODEL_FIELD, Admission, SpendControls, cost_header
from tier_router.aws_secrets import SecretsError, SSMKeySource, fetch_parameter, key_source
from tier_router.breakers import BreakerBoard, BreakerConfig
from tier_router.disconnect import ClientGone, DisconnectWatch
from tier_router.errors import APIError
from tier_router.forward import AllCandidatesFailed, Attempt, Forwarder, UpstreamClientError
from tier_router.health import BreakerHealth, Health
from tier_router.provider_keys import KeySource, redact
from tier_router.providers.base import UpstreamProtocolError, dumps
from tier_router.providers.mock import MockTransport
from tier_router.router_keys import KeyRecord, KeyRing, parse_keys, plain_keys
from tier_router.routing.engine import Decision, ModelRoute, Rules, UnknownModelError
from tier_router.routing.loader import load_rules
from tier_router.routing.request import MAY_HOLD_SURROGATES, encodable, parse_chat
from tier_router.settings import Settings
from tier_router.store.base import Store, StoreError
from tier_router.store.deadline import DeadlineStore
from tier_router.store.factory import open_store
from tier_router.telemetry import AccessLog

log = logging.getLogger("tier_router")
KEYS_REFRESH_S = 300.0
WATCH_AFTER_S = 0.25
"""How long a request runs before the router starts watching for a client disconnect."""


CA_DIR = Path(__file__).resolve().parent.parent / "cacerts"
"""In the Lambda artifact: certifi's roots as an OpenSSL hashed directory (handler/Makefile)."""


def tls_verify(ca_dir: Path = CA_DIR, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext | bool:
    """How the shared client verifies TLS. With the artifact's hashed CA directory, OpenSSL
    loads only the roots a handshake needs: building a context from certifi's whole bundle
    parses ~120 certificates, 20-35 ms of every cold start. Anywhere else, or when the operator
    points SSL_CERT_FILE / SSL_CERT_DIR elsewhere, httpx's default (certifi, or those)."""
    if environ.get("SSL_CERT_FILE") or environ.get("SSL_CERT_DIR") or not ca_dir.is_dir():
        return True
    return ssl.create_default_context(capath=str(ca_dir))


def make_http_client() -> httpx.AsyncClient:
    """The one client per process: pooled keep-alive connections reused across requests
    (and across Lambda invocations); `mock://` is served in-process. Idle connections are
    dropped after 30 s, below common server keep-alive timeouts (ALB 60 s, nginx 75 s), so
    the router does not reuse a connection the provider is closing."""
    return httpx.AsyncClient(
        verify=tls_verify(),
        mounts={"mock://": MockTransport()},
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30),
        timeout=httpx.Timeout(30.0),
        follow_redirects=False,
    )


class Gateway:
    """Everything a request needs, built once."""

    def __init__(
        self,
        settings: Settings,
        *,
        rules: Rules | None = None,
        client: httpx.AsyncClient | None = None,
        keys: KeySource | None = None,
        health: Health | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules or load_rules(settings.rules_path)
        self.client = client or make_http_client()
        self.key_names = sorted({p.api_key_env for p in self.rules.spec.providers.values() if p.api_key_env})
        # Provider keys: the environment locally; SSM SecureStrings on Lambda, read lazily.
        self.keys = keys or key_source(self.key_names, http_client=self.client)
        self.store: Store = DeadlineStore(
            store or open_store(settings.store_url, http_client=self.client), settings.store_timeout_s
        )
        self.breakers = breaker_health(self.store, self.rules) if health is None else None
        self.spend = SpendControls(self.store, self.rules)
        self.forwarder = Forwarder(self.client, self.keys, health or self.breakers)
        self.disconnects = DisconnectWatch(WATCH_AFTER_S)
        self.keyring = KeyRing(plain_keys(settings.api_keys))
        if settings.keys_file is not None:
            self.keyring.replace(
                [*self.keyring.records, *parse_keys(settings.keys_file.read_text(), str(settings.keys_file))]
            )
        self.keys_loader: Callable[[], Awaitable[list[KeyRecord]]] | None = None
        self._keys_loaded_at = 0.0
        if settings.keys_ssm:
            self.keys_loader = ssm_keys_loader(settings.keys_ssm, self.client)
        self.models_body = dumps(models_list(self.rules))
        self.access_log = AccessLog(
            enabled=settings.log_requests, emf=settings.emf_metrics, buffered=settings.background_settle
        )
        if self.breakers is not None:
            self.breakers.board.on_open = lambda key, change: self.access_log.event(
                "BreakerOpened", breaker=key, change=change
            )
        missing = self.keys.missing(self.key_names)
        if missing:
            log.warning("provider keys not set: %s (their models will be skipped)", ", ".join(missing))
        self.spend.apply_keys(self.keyring.records)
        if not self.keyring and not settings.keys_ssm:
            if settings.require_auth:
                log.error("no router keys are configured: every request will be refused (fail closed)")
            else:
                log.warning("no router keys configured: the router accepts requests without a key")

    # -- request steps -------------------------------------------------------------------

    async def authenticate(self, request: Request) -> KeyRecord | None:
        """The caller's key record (its name goes to logs and counters, never the key), or
        None when the router runs without keys (local use only)."""
        if self.keys_loader is not None:
            await self.refresh_keys()
        if not self.keyring:
            if self.settings.require_auth:
                raise APIError(
                    401,
                    "This router has no keys configured and refuses every request.",
                    code="no_keys_configured",
                )
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        record = self.keyring.match(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if record is None:
            raise APIError(
                401,
                "Incorrect or missing API key. Send the router key as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        return record

    async def refresh_keys(self) -> None:
        """Load (or refresh, every KEYS_REFRESH_S) keys from their remote source; keep the old
        set if a refresh fails, so an SSM hiccup never locks everyone out."""
        now = time.monotonic()
        if self._keys_loaded_at and now - self._keys_loaded_at < KEYS_REFRESH_S:
            return
        self._keys_loaded_at = now
        try:
            records = await self.keys_loader()  # type: ignore[misc]
        except Exception as exc:  # any failure: keep serving with what we have
            log.warning("router keys could not be loaded: %s", exc)
            if not self.keyring:
                self._keys_loaded_at = now - KEYS_REFRESH_S + 5  # retry soon when we have nothing
            return
        self.keyring.replace(records)
        self.spend.apply_keys(records)

    def check_tier(self, record: KeyRecord | None, decision: Decision) -> Decision:
        """Keys limited to some tiers: a request naming another tier is refused; a routed one
        moves to the first tier the key allows."""
        if record is None or not record.tiers or decision.tier in record.tiers:
            return decision
        if decision.rule == "explicit":
            raise APIError(
                403,
                f"Router key {record.name!r} may not use {decision.requested_model!r}; "
                f"allowed tiers: {', '.join(record.tiers)}.",
                code="tier_not_allowed",
                param="model",
            )
        allowed = next((t for t in record.tiers if t in self.rules.tiers), None)
        if allowed is None:
            raise APIError(
                403, f"Router key {record.name!r} allows no existing tier.", code="tier_not_allowed"
            )
        return self.rules.retier(
            decision, allowed, f"key {record.name!r} allows only {', '.join(record.tiers)}"
        )

    async def read_json(self, request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "application/json")
        if "json" not in content_type:
            raise APIError(
                415,
                f"Content-Type must be application/json, got {content_type!r}.",
                code="unsupported_media_type",
            )
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        raw = await read_body(request, limit)
        try:
            # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
            body = JSON_DECODER.decode(raw.decode("utf-8-sig"))
        except (ValueError, RecursionError) as exc:
            reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else "invalid JSON"
            raise APIError(
                400, f"The request body is not valid JSON ({reason}).", code="invalid_json"
            ) from None
        if not isinstance(body, dict):
            raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
        if MAY_HOLD_SURROGATES.search(raw) and not encodable(body):
            raise APIError(
                400, "The request body contains an unpaired surrogate (invalid Unicode).", code="invalid_json"
            )
        return body

    def decide(self, request: Request, body: dict[str, Any]) -> Decision:
        try:
            chat = parse_chat(body, text_checked=True)  # read_json refused lone surrogates
        except ValidationError as exc:
            raise invalid_request(exc) from None
        except RecursionError:
            raise APIError(400, "The request is nested too deeply.", code="invalid_request") from None
        try:
            return self.rules.decide(chat, request.headers)
        except UnknownModelError as exc:
            raise APIError(404, str(exc), code="model_not_found", param="model") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit`. Reads ASGI messages directly:
    usually there is exactly one, and `Request.stream()` would wrap it in an async generator."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


def ssm_keys_loader(name: str, client: httpx.AsyncClient) -> Callable[[], Awaitable[list[KeyRecord]]]:
    """Router keys from one SSM SecureString (the keys file's text), fetched on demand."""

    async def load() -> list[KeyRecord]:
        return parse_keys(await fetch_parameter(name, http_client=client), f"ssm:{name}")

    return load


def breaker_health(store: Store, rules: Rules) -> BreakerHealth | None:
    spec = rules.spec.breakers
    if not spec.enabled:
        return None
    config = BreakerConfig(
        failure_threshold=spec.failure_threshold,
        window_s=spec.window_s,
        recovery_s=spec.recovery_s,
        probe_lease_s=max(spec.recovery_s, 30.0),
        cache_ttl_s=spec.cache_ttl_s,
    )
    return BreakerHealth(BreakerBoard(store, config))


def reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON: refuse them rather than forward them to a provider."""
    raise ValueError(f"{name} is not valid JSON")


JSON_DECODER = json.JSONDecoder(parse_constant=reject_constant)
"""Built once: `json.loads(..., parse_constant=...)` would build a decoder per request."""


def too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"The request body is larger than this router's limit of {limit} bytes.",
        code="request_too_large",
    )


def invalid_request(exc: ValidationError) -> APIError:
    error = exc.errors(include_url=False, include_input=False)[0]
    param = ".".join(str(part) for part in error["loc"])
    return APIError(
        400, f"Invalid request: {param}: {error['msg']}.", code="invalid_request", param=param or None
    )


def request_id_of(request: Request) -> str:
    """Lambda's request id when there is one (so logs join up), else this process's random
    prefix and a counter: unique across processes and restarts, without a syscall per request."""
    context = request.scope.get("aws.context")
    return getattr(context, "aws_request_id", None) or f"{REQUEST_ID_PREFIX}{next(REQUEST_COUNTER):08x}"


REQUEST_ID_PREFIX = os.urandom(6).hex()
REQUEST_COUNTER = itertools.count(1)


def decision_headers(decision: Decision) -> dict[str, str]:
    return {
        "x-router-tier": decision.tier or "",
        "x-router-rule": decision.rule,
        "x-router-priority": decision.priority,
    }


def served_headers(route: ModelRoute, attempts: list[Attempt]) -> dict[str, str]:
    return {
        "x-router-model": route.name,
        "x-router-provider": route.provider_name,
        "x-router-attempts": str(sum(a.tried for a in attempts)),
    }


def all_failed_error(exc: AllCandidatesFailed) -> APIError:
    """502 when providers failed, 504 when they all timed out, 429 when all were rate limited,
    503 when nothing could even be tried (open breakers, missing keys)."""
    attempts = exc.attempts
    tried = [a for a in attempts if a.tried]
    summary = "; ".join(
        f"{a.model} ({a.provider}): {a.outcome}{' - ' + a.detail if a.detail else ''}" for a in attempts
    )
    headers: dict[str, str] = {"x-router-attempts": str(len(tried))}
    unsupported = [a for a in attempts if a.outcome == "unsupported"]
    if not tried and unsupported:
        message = "; ".join(f"{a.model} ({a.provider}): {a.detail}" for a in unsupported)
        return APIError(
            400, f"No candidate model can serve this request: {message}", code="unsupported_request"
        )
    if not tried:
        status, code = 503, "no_available_provider"
    elif all(a.status == 429 for a in tried):
        status, code = 429, "upstream_rate_limited"
        waits = [a.retry_after for a in tried if a.retry_after is not None]
        if waits:
            headers["retry-after"] = str(max(1, round(min(waits))))
    elif all(a.outcome == "timeout" for a in tried):
        status, code = 504, "upstream_timeout"
    else:
        status, code = 502, "upstream_error"
    error = APIError(status, f"Every candidate model failed: {summary}", code=code, headers=headers)
    error.type = "rate_limit_error" if status == 429 else "upstream_error"
    return error


def models_list(rules: Rules) -> dict[str, Any]:
    names = ["auto", *rules.tiers, *rules.routes, *rules.spec.aliases]
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "tier-router"} for name in names],
    }


# -- endpoints ---------------------------------------------------------------------------


async def chat_completions(request: Request) -> Response:
    """The Starlette route: serves chat when middleware was added (RouterApp steps aside then)."""
    return await complete_chat(request, request.app.state.gateway)


async def complete_chat(request: Request, gateway: Gateway) -> Response:
    started = time.perf_counter()
    request_id = request_id_of(request)
    record = await gateway.authenticate(request)
    key_id = record.name if record else None
    body = await gateway.read_json(request)
    decision = gateway.check_tier(record, gateway.decide(request, body))
    try:
        admission = await gateway.spend.admit(decision, body, key_id, request.headers)
    except APIError as exc:
        refused = {**decision_headers(decision), "x-router-request-id": request_id}
        log_request(gateway, decision, [], None, started, "refused", key_id, status=exc.status, extra=refused)
        raise exc.with_headers(refused) from None
    decision = admission.decision
    headers = {**decision_headers(decision), **admission.headers, "x-router-request-id": request_id}
    if admission.cached is not None:
        return cached_response(gateway, admission, headers, started)
    try:
        if body.get("stream"):
            return await stream_response(request, gateway, admission, body, headers, started)
        with gateway.disconnects.request(request.scope, request.receive):
            completion = await gateway.forwarder.complete(decision, body)
    except ClientGone:
        await gateway.spend.settle(admission, None, 0)
        log_request(gateway, decision, [], None, started, "client_gone", key_id, status=499, extra=headers)
        return Response(status_code=499)
    except AllCandidatesFailed as exc:
        await gateway.spend.settle(admission, None, 0)
        error = all_failed_error(exc)
        log_request(
            gateway,
            decision,
            exc.attempts,
            None,
            started,
            "failed",
            key_id,
            status=error.status,
            extra=headers,
        )
        raise error.with_headers(headers) from None
    except UpstreamClientError as exc:
        await gateway.spend.settle(admission, exc.route, 0)
        log_request(
            gateway,
            decision,
            exc.attempts,
            exc.route,
            started,
            "client_error",
            key_id,
            status=exc.status,
            extra=headers,
        )
        raise APIError(exc.status, exc.message, code="upstream_rejected_request").with_headers(
            {**headers, **served_headers(exc.route, exc.attempts)}
        ) from None
    except BaseException:
        await gateway.spend.settle(admission, None, None)
        raise
    cost = gateway.spend.price(completion.route, completion.data.get("usage"))
    headers.update(served_headers(completion.route, completion.attempts))
    headers.update(completion.headers)
    headers.update(cost_header(cost))
    content = completion.raw if completion.raw is not None else dumps(completion.data)

    async def settle() -> None:
        """After the response is sent: the log line and the spend writes add no latency."""
        log_request(
            gateway,
            decision,
            completion.attempts,
            completion.route,
            started,
            "ok",
            key_id,
            cost,
            usage=completion.data.get("usage"),
            extra=headers,
        )
        await gateway.spend.settle(admission, completion.route, cost, completion=completion.data)

    return SettlingResponse(
        content,
        settle,
        background=gateway.settings.background_settle,
        headers=headers,
        media_type="application/json",
    )


def cached_response(
    gateway: Gateway, admission: Admission, headers: dict[str, str], started: float
) -> Response:
    """A cache hit costs nothing and is counted as a hit; the answer is the stored one."""
    cached = dict(admission.cached or {})
    headers.update(cost_header(0))
    route = gateway.rules.routes.get(str(cached.pop(CACHED_MODEL_FIELD, "")))
    if route is not None:
        headers.update({"x-router-model": route.name, "x-router-provider": route.provider_name})
    headers["x-router-attempts"] = "0"
    log_request(
        gateway, admission.decision, [], route, started, "cache_hit", admission.key_id, 0, extra=headers
    )

    async def settle() -> None:
        await gateway.spend.settle(admission, route, 0)

    return SettlingResponse(dumps(cached), settle, headers=headers, media_type="application/json")


PENDING: set[asyncio.Task[None]] = set()
"""Post-response work in flight (strong references, so tasks are not collected early)."""


class SettlesWhenDone:
    """Runs `on_done` after the response is sent — or after sending failed: the `finally`
    makes sure a reservation is never left hanging (and, for streams whose body never ran,
    that the upstream stream is closed).

    With `in_background` (local serving), that work runs as its own task so the connection is
    free for the client's next request at once; on Lambda it always runs inline, because a
    frozen container would not finish a background task.
    """

    on_done: Callable[[], Awaitable[None]]
    in_background: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            if self.in_background and "aws.event" not in scope:
                task = asyncio.get_running_loop().create_task(self.on_done())
                PENDING.add(task)
                task.add_done_callback(PENDING.discard)
            else:
                await self.on_done()


class SettlingResponse(SettlesWhenDone, Response):
    def __init__(
        self,
        content: bytes,
        on_done: Callable[[], Awaitable[None]],
        *,
        background: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self.on_done = on_done
        self.in_background = background


class SettlingStream(SettlesWhenDone, StreamingResponse):
    def __init__(self, content: AsyncIterator[bytes], on_done: Callable[[], Awaitable[None]], **kwargs: Any):
        super().__init__(content, **kwargs)
        self.on_done = on_done


async def stream_response(
    request: Request,
    gateway: Gateway,
    admission: Admission,
    body: dict[str, Any],
    headers: dict[str, str],
    started: float,
) -> Response:
    decision = admission.decision
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    try:
        with gateway.disconnects.request(request.scope, request.receive):
            opened = await gateway.forwarder.open_stream(decision, body, include_usage)
    except BaseException:
        await gateway.spend.settle(admission, None, 0)
        raise
    headers.update(served_headers(opened.route, opened.attempts))
    headers.update(opened.headers)
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"

    cost: int | None = None

    def price_usage(chunk: dict[str, Any]) -> None:
        """The final usage chunk: priced here, and the client sees the cost in it."""
        nonlocal cost
        usage = chunk["usage"]
        cost = gateway.spend.price(opened.route, usage)
        if cost is not None:
            chunk["usage"] = {**usage, "cost_usd": cost / 1_000_000}

    async def events() -> AsyncIterator[bytes]:
        nonlocal cost
        outcome = "ok"
        try:
            async for frame in opened.frames(price_usage):
                yield frame
            yield b"data: [DONE]\n\n"
        except (UpstreamProtocolError, TimeoutError, httpx.HTTPError) as exc:
            outcome = "stream_interrupted"
            message = redact(
                f"The provider's stream failed after it started: {exc or exc.__class__.__name__}",
                [opened.secret or ""],
            )
            error = {
                "error": {
                    "message": message,
                    "type": "upstream_error",
                    "param": None,
                    "code": "stream_interrupted",
                }
            }
            yield b"data: " + dumps(error) + b"\n\n"
        finally:
            usage = opened.decoder.usage
            if cost is None and outcome == "ok":
                cost = gateway.spend.price(opened.route, usage)
            await gateway.spend.settle(admission, opened.route, cost)
            log_request(
                gateway,
                decision,
                opened.attempts,
                opened.route,
                started,
                outcome,
                admission.key_id,
                cost,
                usage=usage,
                extra=headers,
            )

    async def cleanup() -> None:
        await opened.aclose()
        await gateway.spend.settle(admission, opened.route, None)

    return SettlingStream(events(), cleanup, headers=headers, media_type="text/event-stream")


async def explain(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await gateway.authenticate(request)
    body = await gateway.read_json(request)
    decision = gateway.decide(request, body)
    data = decision.as_dict()
    if gateway.breakers is not None:
        try:
            states = await gateway.breakers.states(list(decision.candidates))
        except StoreError:
            states = {}
        for entry in data["chain"]:
            entry["breakers"] = states.get(entry["model"])
    return JSONResponse(data, headers=decision_headers(decision))


async def models(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    await gateway.authenticate(request)
    return Response(gateway.models_body, media_type="application/json")


async def status(request: Request) -> Response:
    """Breaker states of every model (and, with the spend work, today's counters)."""
    gateway: Gateway = request.app.state.gateway
    await gateway.authenticate(request)
    breakers = {}
    if gateway.breakers is not None:
        try:
            breakers = await gateway.breakers.states(list(gateway.rules.routes.values()))
        except StoreError as exc:
            raise APIError(503, f"state store unreachable: {exc}", code="store_unavailable") from None
    try:
        spend = await gateway.spend.status()
    except StoreError as exc:
        raise APIError(503, f"state store unreachable: {exc}", code="store_unavailable") from None
    tiers = {t: [r.name for r in c] for t, c in gateway.rules.tiers.items()}
    return JSONResponse({**spend, "breakers": breakers, "tiers": tiers})


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    problems = []
    if isinstance(gateway.keys, SSMKeySource):
        try:
            await gateway.keys.refresh()
        except SecretsError as exc:
            problems.append(f"provider keys unavailable: {exc}")
    problems += [f"provider key {name} is not set" for name in gateway.keys.missing(gateway.key_names)]
    if gateway.keys_loader is not None:
        await gateway.refresh_keys()
    if not gateway.keyring and gateway.settings.require_auth:
        problems.append("no router keys are configured: every request is refused")
    try:
        await gateway.store.ping()
    except StoreError as exc:
        problems.append(f"state store unreachable: {exc}")
    body = {
        "status": "ready" if not problems else "not_ready",
        "rules": str(gateway.rules.source),
        "problems": problems,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


def log_request(
    gateway: Gateway,
    decision: Decision,
    attempts: list[Attempt],
    route: ModelRoute | None,
    started: float,
    outcome: str,
    key_id: str | None = None,
    cost: int | None = None,
    *,
    status: int = 200,
    usage: Any = None,
    extra: dict[str, str] | None = None,
) -> None:
    """One line per request (and its metrics). `extra`: the admission headers, for cache and
    downgrade facts."""
    if not gateway.access_log.enabled:
        return
    latency = round((time.perf_counter() - started) * 1000, 2)
    upstream = round(sum(a.elapsed_ms for a in attempts), 2)
    extra = extra or {}
    record: dict[str, Any] = {
        "event": "request",
        "request_id": extra.get("x-router-request-id"),
        "outcome": outcome,
        "status": status,
        "key": key_id,
        "tier": decision.tier,
        "rule": decision.rule,
        "priority": decision.priority,
        "model": route.name if route else None,
        "provider": route.provider_name if route else None,
        "attempts": [a.as_dict() for a in attempts],
        "latency_ms": latency,
        "upstream_ms": upstream,
        "router_ms": round(latency - upstream, 2),
        "cost_micro_usd": cost,
        "features": decision.features.as_dict(),
    }
    if isinstance(usage, dict):
        record["prompt_tokens"] = usage.get("prompt_tokens")
        record["completion_tokens"] = usage.get("completion_tokens")
        record["_usage"] = usage
    if "x-router-cache" in extra:
        record["cache"] = extra["x-router-cache"]
    if "x-router-downgraded-from" in extra:
        record["downgraded_from"] = extra["x-router-downgraded-from"]
        record["downgrade_reason"] = extra.get("x-router-downgrade-reason")
    if not gateway.access_log.emf:
        record.pop("_usage", None)
    gateway.access_log.write(record)


# -- errors --------------------------------------------------------------------------------


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def on_http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: "Unknown path.", 405: "Method not allowed."}.get(status, "Request failed.")
    return APIError(status, f"{message} ({request.method} {request.url.path})").response()


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return APIError(
        500, "The router hit an internal error; it has been logged.", type="server_error"
    ).response()


CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


class RouterApp(Starlette):
    """Starlette, with one shortcut: `POST` chat completions — the only hot path — goes straight
    to its endpoint instead of through Starlette's middleware, routing and exception layers.

    Those layers are generic (several nested ASGI calls and wrapped `send`s per request); for
    this one route the same behaviour fits in a few lines: an APIError becomes its response,
    anything else a logged 500. Every other path, and other methods on these paths (405), take
    the normal Starlette route — and so does everything once middleware has been added with
    `add_middleware`, so that middleware sees every request.
    """

    gateway: Gateway

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.user_middleware
            or scope["type"] != "http"
            or scope["method"] != "POST"
            or get_route_path(scope) not in CHAT_PATHS  # the path as Starlette's router sees it
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        request = Request(scope, receive, send)
        try:
            response = await complete_chat(request, self.gateway)
        except ClientDisconnect:  # gone while sending its body: nobody to answer
            return
        except APIError as exc:
            response = exc.response()
        except Exception as exc:  # the same net as Starlette's ServerErrorMiddleware
            response = await on_unexpected(request, exc)
        await response(scope, receive, send)


def create_app(settings: Settings | None = None, **gateway_options: Any) -> Starlette:
    settings = settings or Settings.from_env()
    gateway = Gateway(settings, **gateway_options)
    app = RouterApp(
        routes=[
            *(Route(path, chat_completions, methods=["POST"]) for path in CHAT_PATHS),
            Route("/v1/route/explain", explain, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/router/status", status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            APIError: on_api_error,
            404: on_http_exception,
            405: on_http_exception,
            Exception: on_unexpected,
        },
    )
    app.state.gateway = app.gateway = gateway
    return app
