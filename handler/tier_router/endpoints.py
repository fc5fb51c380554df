"""The endpoints. Each fills the request's `Exchange`; none settles or logs (see `lifecycle`).

POST /v1/chat/completions   auth → body → decide → admit → cache | forward → answer/stream
POST /v1/route/explain      the decision for a body (chat, or embeddings: `input`, no `messages`),
                            with breaker states, nothing forwarded
GET  /v1/models             auto, the tiers, the models and the aliases
GET  /v1/models/{id}        one of them (OpenAI's model object), or 404
GET  /v1/router/status      today's spend and results, quality, token trend, budgets, breakers, schema checks
GET  /healthz, /readyz      liveness; readiness (keys, store)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tier_router import cascade
from tier_router.admission import CACHED_MODEL_FIELD, Admission
from tier_router.auth import check_tier
from tier_router.aws.ssm import SSMKeySource
from tier_router.body import invalid_request, read_json, validation_error
from tier_router.conversations import Turn
from tier_router.embedding_params import embedding_decision, is_embeddings, parse_embedding
from tier_router.errors import APIError, ClientGone, SecretsError, StoreError
from tier_router.fallback import AllCandidatesFailed, UpstreamClientError, all_failed_error
from tier_router.gateway import Gateway
from tier_router.lifecycle import Exchange
from tier_router.params import check as check_params
from tier_router.providers.base import dumps
from tier_router.recovery import Resume
from tier_router.request_line import Outcome
from tier_router.responses import (
    answer,
    cascade_headers,
    cost_header,
    decision_headers,
    event_stream,
    served_headers,
)
from tier_router.router_keys import KeyRecord
from tier_router.routing.engine import Decision, UnknownModelError, WrongKindError
from tier_router.routing.request import parse_chat

EXCHANGE = "tier_router.exchange"
"""The scope key under which `app` hands each request's Exchange to Starlette routes."""
READYZ_KEY = f"readyz:{socket.gethostname()}:{os.getpid()}"
"""The write probe's key: one small item per process, overwritten by each probe."""
READYZ_PROBE_TTL_S = 300
"""The probe item expires on its own (the stores purge expired items)."""


async def caller(request: Request, gateway: Gateway, exchange: Exchange) -> KeyRecord | None:
    """The caller's router key (its name goes on the request line), or APIError 401."""
    record = await gateway.auth.authenticate(request.headers.get("authorization", ""))
    exchange.line.key = record.name if record else None
    return record


async def chat(request: Request, gateway: Gateway, exchange: Exchange) -> Response:
    record = await caller(request, gateway, exchange)
    key_id = exchange.line.key
    exchange.tiers = tuple(record.tiers) if record is not None and record.tiers else None
    body = await read_json(
        request.headers, request.receive, gateway.body_limits, timed="aws.event" not in request.scope
    )
    decision, exchange.turn = await placed(gateway, request, body, record, key_id)
    exchange.routed(decision)
    try:
        admission = await gateway.spend.admit(
            decision, body, key_id, request.headers, request_id=exchange.request_id
        )
    except APIError as exc:
        raise exc.with_headers(decision_headers(decision)) from None
    exchange.admitted(admission)
    headers = {**decision_headers(admission.decision), **admission.response_headers()}
    if admission.cached is not None:
        return cached_answer(gateway, exchange, admission, headers)
    if gateway.quality.judging is not None:  # sampled for judging, after the response
        exchange.sampled = gateway.quality.judging.pick(admission.decision, body)
    try:
        if body.get("stream"):
            return await stream(request, gateway, exchange, body, headers)
        return await complete(request, gateway, exchange, body, headers)
    except (ClientGone, AllCandidatesFailed, UpstreamClientError) as exc:
        return unanswered(exchange, exc, headers)


def unanswered(exchange: Exchange, exc: Exception, headers: dict[str, str]) -> Response:
    """Forwarding ended without an answer (chat and embeddings alike): the client left (499),
    every candidate failed, or a provider refused the request as the client's fault — the
    last two raised as the client's APIError, with the decision's and the attempts' headers."""
    if isinstance(exc, AllCandidatesFailed):
        exchange.served_by(None, exc.attempts)
        exchange.ended(Outcome.FAILED)
        raise all_failed_error(exc).with_headers(headers) from None
    if isinstance(exc, UpstreamClientError):
        exchange.served_by(exc.route, exc.attempts)
        exchange.cost = 0
        exchange.ended(Outcome.CLIENT_ERROR)
        raise APIError(exc.status, exc.message, code="upstream_rejected_request").with_headers(
            {**headers, **served_headers(exc.route, exc.attempts)}
        ) from None
    exchange.ended(Outcome.CLIENT_GONE, 499)
    return Response(status_code=499)


def model_errors(exc: UnknownModelError | WrongKindError) -> APIError:
    """404 for a name the router does not serve, 400 for one of the other kind (a chat model
    on /v1/embeddings, an embedding model on chat)."""
    if isinstance(exc, WrongKindError):
        return APIError(400, str(exc), code="unsupported_model", param="model")
    return APIError(404, str(exc), code="model_not_found", param="model")


def decide(gateway: Gateway, request: Request, body: dict[str, Any], key: str | None) -> Decision:
    """The routing decision for a checked body; `key` (the router key's name) may place it
    (`routing.sticky`)."""
    check_params(body)  # OpenAI's types and ranges: a 400 naming the param, before routing
    try:
        # read_json refused lone surrogates; check_params made the direct checks redundant
        chat = parse_chat(body, text_checked=True, params_checked=True)
    except validation_error() as exc:
        raise invalid_request(exc) from None
    except RecursionError:
        raise APIError(400, "The request is nested too deeply.", code="invalid_request") from None
    try:
        return gateway.rules.decide(chat, request.headers, key)
    except (UnknownModelError, WrongKindError) as exc:
        raise model_errors(exc) from None


async def placed(
    gateway: Gateway, request: Request, body: dict[str, Any], record: KeyRecord | None, key: str | None
) -> tuple[Decision, Turn | None]:
    """A chat request's decision: the rules', within the tiers the caller's key may use, placed
    by its conversation's memory (priced against those tiers), and limited to them again (a
    memory from before the key was limited); and the turn to remember."""
    restrict = partial(check_tier, gateway.rules, record)
    decision, turn = await gateway.conversations.place(
        restrict(decide(gateway, request, body, key)), body, request.headers, key, restrict=restrict
    )
    return restrict(decision), turn


async def complete(
    request: Request, gateway: Gateway, exchange: Exchange, body: dict[str, Any], headers: dict[str, str]
) -> Response:
    decision = exchange.decision
    assert decision is not None
    failure = None  # the served answer's own validation failure
    price = gateway.spend.price
    with gateway.disconnects.request(request.scope, request.receive):
        if decision.cascade is None:
            completion = await gateway.forwarder.complete(decision, body, attempts=exchange.attempts)
            cascade.in_hand(exchange, completion, completion.attempts, price)
        else:
            exchange.line.cascade = decision.cascade.to
            done = await cascade.complete(gateway.forwarder, gateway.rules, price, exchange, body)
            completion, failure = done.completion, done.failure
            headers.update(cascade_headers(done.escalations, failure, done.decision))
    exchange.completion = completion.data if failure is None else None  # never cache a failed answer
    if exchange.sampled is not None:
        from tier_router.quality.judge import answer_text  # judging is on: imported with it

        exchange.sampled.answer = answer_text(completion.data)
    exchange.ended(Outcome.OK, 200)
    headers.update(served_headers(completion.route, exchange.attempts))
    headers.update(completion.headers)
    headers.update(cost_header(exchange.total_cost(exchange.cost)))
    return answer(completion.raw if completion.raw is not None else dumps(completion.data), headers)


async def stream(
    request: Request, gateway: Gateway, exchange: Exchange, body: dict[str, Any], headers: dict[str, str]
) -> Response:
    decision = exchange.decision
    assert decision is not None
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    ends = gateway.forwarder.deadline()
    with gateway.disconnects.request(request.scope, request.receive):
        opened = await gateway.forwarder.open_stream(
            decision, body, include_usage, ends=ends, attempts=exchange.attempts
        )
    exchange.stream = opened  # from here on, lifecycle closes it whatever happens
    n = body.get("n")
    opened.state.choices = n if type(n) is int and n > 1 else 1
    exchange.served_by(opened.route, opened.attempts)
    headers.update(served_headers(opened.route, opened.attempts))
    headers.update(opened.headers)
    if decision.cascade is not None and decision.cascade.hold_stream:
        from tier_router.holdback import held_stream  # with `validators`: cascades only

        return await held_stream(request, gateway, exchange, body, headers, include_usage, ends)
    limit = gateway.rules.spec.routing.max_stream_recoveries
    resume = Resume(gateway.forwarder, gateway.spend, decision, body, include_usage, limit)
    return event_stream(exchange, opened, gateway.spend, headers, resume)


def cached_answer(
    gateway: Gateway, exchange: Exchange, admission: Admission, headers: dict[str, str]
) -> Response:
    """A cache hit costs nothing and is counted as a hit; the answer is the stored one."""
    cached = dict(admission.cached or {})
    route = gateway.rules.routes.get(str(cached.pop(CACHED_MODEL_FIELD, "")))
    headers.update(served_headers(route, []) if route is not None else {"x-router-attempts": "0"})
    headers.update(cost_header(0))
    exchange.served_by(route, [])
    exchange.cost = 0
    exchange.ended(Outcome.CACHE_HIT, 200)
    return answer(dumps(cached), headers)


# -- the other endpoints (Starlette routes; `app` puts the exchange in the scope) ----------


def gateway_of(request: Request) -> Gateway:
    return request.app.gateway  # type: ignore[no-any-return]


async def authenticated(request: Request) -> Gateway:
    gateway = gateway_of(request)
    await caller(request, gateway, request.scope[EXCHANGE])
    return gateway


async def chat_route(request: Request) -> Response:
    """Chat through Starlette's routing: used once middleware has been added (see `app`)."""
    return await chat(request, gateway_of(request), request.scope[EXCHANGE])


async def explain(request: Request) -> Response:
    gateway = gateway_of(request)
    record = await caller(request, gateway, request.scope[EXCHANGE])
    body = await read_json(
        request.headers, request.receive, gateway.body_limits, timed="aws.event" not in request.scope
    )
    key = request.scope[EXCHANGE].line.key
    if is_embeddings(body):  # an embeddings body: routed by the `embeddings:` section
        try:
            decision = embedding_decision(gateway.rules, parse_embedding(body), request.headers, key)
        except (UnknownModelError, WrongKindError) as exc:
            raise model_errors(exc) from None
    else:  # placed as the turn would be (read only: explain writes nothing)
        decision, _ = await placed(gateway, request, body, record, key)
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
    gateway = await authenticated(request)
    return Response(gateway.models_body, media_type="application/json")


async def model(request: Request) -> Response:
    """One entry of GET /v1/models (`auto`, a tier, a model or an alias), or a 404."""
    gateway = await authenticated(request)
    name = request.path_params["model"]
    found = gateway.models_by_id.get(name)
    if found is None:
        message = f"The model {name!r} does not exist on this router."
        raise APIError(404, message, code="model_not_found", param="model")
    return Response(found, media_type="application/json")


async def status(request: Request) -> Response:
    """Breaker states of every model, today's spend, quality (`quality.report`) and budgets."""
    gateway = await authenticated(request)
    try:
        breakers = {}
        if gateway.breakers is not None:
            breakers = await gateway.breakers.states(list(gateway.rules.routes.values()))
        spend = await gateway.spend.status()
        reference = gateway.rules.spec.quality.reference
        from tier_router.quality import report as quality_report  # the status route only

        quality = await quality_report.read(gateway.spend.ledger, reference=reference)
        from tier_router.spend.trend import read_trend  # the status route only

        trend = await read_trend(gateway.spend.ledger)
    except StoreError as exc:
        raise APIError(503, f"state store unreachable: {exc}", code="store_unavailable") from None
    tiers = {t: [r.name for r in c] for t, c in gateway.rules.tiers.items()}
    from tier_router.validators.schemas import STATS as SCHEMA_STATS  # imported by a cascade's check

    checks = dataclasses.asdict(SCHEMA_STATS)  # this process's, since it started
    return JSONResponse(
        {
            **spend,
            "quality": quality.as_dict(),
            "trend": trend.as_dict(),
            "breakers": breakers,
            "tiers": tiers,
            "schema_checks": checks,
        }
    )


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    gateway = gateway_of(request)
    problems = []
    if isinstance(gateway.keys, SSMKeySource):
        try:
            await gateway.keys.refresh()
        except SecretsError as exc:
            problems.append(f"provider keys unavailable: {exc}")
    problems += [f"provider key {name} is not set" for name in gateway.keys.missing(gateway.key_names)]
    await gateway.auth.refresh()
    if not gateway.auth.configured and gateway.auth.require:
        problems.append("no router keys are configured: every request is refused")
    try:
        await gateway.store.ping()
    except StoreError as exc:
        problems.append(f"state store unreachable: {exc}")
    else:
        # A store that answers reads may still refuse writes (a read-only SQLite file, a
        # read-only IAM role): every budget, limit and breaker write would then fail.
        try:
            await gateway.store.put(
                READYZ_KEY, {"at": int(time.time())}, expires_at=time.time() + READYZ_PROBE_TTL_S
            )
        except StoreError as exc:
            problems.append(f"state store not writable: {exc}")
    body = {
        "status": "ready" if not problems else "not_ready",
        "rules": str(gateway.rules.source),
        "problems": problems,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)
