"""POST /v1/embeddings: the chat path's lifecycle, for embedding models.

    auth → body → check (`embedding_params`) → decide (`Rules.decide_embedding`: the
    `embeddings:` section's rules on the input's length, headers, metadata) → the key's tiers →
    admit (rate limit, pacing, hard cap: input tokens × the dearest model of the chain) →
    forward (`Forwarder.embed`: the chat candidate loop, fallback and breakers, with each
    provider's embeddings adapter) → the provider's answer as is, with the x-router-* headers

Settling and the one log line are `lifecycle`'s, as for chat; the line says
`"endpoint": "embeddings"`. Nothing here streams, caches, cascades or samples for judging.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tier_router.auth import check_tier
from tier_router.body import read_json
from tier_router.embedding_params import EmbeddingInput, embedding_decision, parse_embedding
from tier_router.endpoints import EXCHANGE, caller, gateway_of, model_errors, unanswered
from tier_router.errors import APIError, ClientGone
from tier_router.fallback import AllCandidatesFailed, UpstreamClientError
from tier_router.gateway import Gateway
from tier_router.providers.base import dumps
from tier_router.request_line import EMBEDDINGS, Outcome
from tier_router.responses import answer, cost_header, decision_headers, served_headers
from tier_router.routing.engine import Decision, UnknownModelError, WrongKindError
from tier_router.spend.reservation import Bound


async def embeddings(request: Request) -> Response:
    gateway, exchange = gateway_of(request), request.scope[EXCHANGE]
    exchange.line.endpoint = EMBEDDINGS
    record = await caller(request, gateway, exchange)
    exchange.tiers = tuple(record.tiers) if record is not None and record.tiers else None
    body = await read_json(
        request.headers, request.receive, gateway.body_limits, timed="aws.event" not in request.scope
    )
    parsed = parse_embedding(body)
    decision = check_tier(gateway.rules, record, decide(gateway, request, parsed, exchange.line.key))
    exchange.routed(decision)
    billed = Bound(parsed.billed_tokens, None, 1, False)
    try:
        admission = await gateway.spend.admit(
            decision, body, exchange.line.key, request.headers, request_id=exchange.request_id, billed=billed
        )
    except APIError as exc:
        raise exc.with_headers(decision_headers(decision)) from None
    exchange.admitted(admission)
    headers = {**decision_headers(admission.decision), **admission.response_headers()}
    try:
        with gateway.disconnects.request(request.scope, request.receive):
            done = await gateway.forwarder.embed(admission.decision, body, parsed.count, exchange.attempts)
    except (ClientGone, AllCandidatesFailed, UpstreamClientError) as exc:
        return unanswered(exchange, exc, headers)
    exchange.served_by(done.route, done.attempts)
    usage: Any = done.data.get("usage")
    exchange.usage = usage if isinstance(usage, dict) else None
    exchange.cost = gateway.spend.price(done.route, exchange.usage)
    exchange.ended(Outcome.OK, 200)
    headers.update(served_headers(done.route, done.attempts))
    headers.update(done.headers)
    headers.update(cost_header(exchange.cost))
    return answer(done.raw if done.raw is not None else dumps(done.data), headers)


def decide(gateway: Gateway, request: Request, parsed: EmbeddingInput, key: str | None) -> Decision:
    """The decision for a checked embeddings request (POST /v1/route/explain's too): 404 for
    an unknown model, 400 for a chat one."""
    try:
        return embedding_decision(gateway.rules, parsed, request.headers, key)
    except (UnknownModelError, WrongKindError) as exc:
        raise model_errors(exc) from None
