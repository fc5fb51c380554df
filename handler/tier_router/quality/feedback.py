"""`POST /v1/feedback`: a caller's score for one answered request, counted against the request's
tier, rule, model and arm in the day's quality item (`quality.counts`).

    {"request_id": "<x-router-request-id>", "score": 0.8}                  0..1, 1 = fully acceptable
    {"request_id": "...", "label": "bad", "comment": "made up a citation"}  or a label (LABELS)

Router key first (as every endpoint): 401. Then, in order: 404 `feedback_disabled` when
`quality.feedback.enabled` is off; 400 naming the field for a bad body; 404
`request_not_found` for a request that is unknown, expired (`window_days`), was not answered,
or belongs to another router key — one answer for all, so no key can probe another's ids;
409 `feedback_exists` once the request has its feedback; 503 when the store fails. On 200:
one conditional write claims the request (`facts.Facts.claim`), one `store.add` counts the
score, and one `{"type": "feedback", ...}` line goes to the access log (the comment redacted
of every secret the router knows, and bounded). The call's own request line is the
lifecycle's, as for any endpoint.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tier_router.body import read_json
from tier_router.endpoints import EXCHANGE, caller, gateway_of
from tier_router.errors import APIError, StoreError
from tier_router.gateway import Gateway
from tier_router.param_errors import bad_request, enum, length, out_of_range, wrong
from tier_router.quality.counts import feedback_deltas, item_expiry, item_key
from tier_router.quality.facts import Fact, Facts
from tier_router.spend.counters import day_key

log = logging.getLogger("tier_router")
LABELS = {"good": 1.0, "neutral": 0.5, "bad": 0.0}
"""A label stands for this score."""
MAX_REQUEST_ID_CHARS = 128
MAX_COMMENT_CHARS = 2000
FIELDS = ("request_id", "score", "label", "comment")


@dataclass(frozen=True, slots=True)
class FeedbackBody:
    """A checked `POST /v1/feedback` body."""

    request_id: str
    score: float
    label: str | None = None
    comment: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FeedbackBody:
        """Every field type-checked, unknown fields refused: APIError 400 naming the field."""
        for name in body:
            if name not in FIELDS:
                raise bad_request(
                    f"Unrecognized request argument supplied: {name[:64]}", name[:64], "unknown_parameter"
                )
        request_id = body.get("request_id")
        if request_id.__class__ is not str:
            raise wrong("request_id", "a string", request_id)
        if not request_id or len(request_id) > MAX_REQUEST_ID_CHARS:
            raise length(
                "request_id", "string", 1 if not request_id else MAX_REQUEST_ID_CHARS, len(request_id)
            )
        score, label = body.get("score"), body.get("label")
        if score is not None and label is not None:
            raise bad_request("Give either 'score' or 'label', not both.", "label", "invalid_value")
        if label is not None:
            if label.__class__ is not str or label not in LABELS:
                raise enum("label", label, tuple(LABELS))
            score = LABELS[label]
        elif score is None:
            raise bad_request(
                "Missing required parameter: 'score' (0..1), or 'label' instead.",
                "score",
                "missing_required_parameter",
            )
        elif score.__class__ not in (int, float) or not math.isfinite(score):
            raise wrong("score", "a number", score)
        elif not 0 <= score <= 1:
            number = "integer" if score.__class__ is int else "decimal"
            raise out_of_range("score", number, score, 0 if score < 0 else 1, above=score > 1)
        comment = body.get("comment")
        if comment is not None:
            if comment.__class__ is not str:
                raise wrong("comment", "a string", comment)
            if len(comment) > MAX_COMMENT_CHARS:
                raise length("comment", "string", MAX_COMMENT_CHARS, len(comment))
        return cls(request_id, float(score), label, comment)


def not_found(request_id: str) -> APIError:
    return APIError(
        404,
        f"No answered request {request_id!r} of this router key within the feedback window.",
        code="request_not_found",
        param="request_id",
    )


async def feedback(request: Request) -> Response:
    """The endpoint (module doc)."""
    gateway = gateway_of(request)
    exchange = request.scope[EXCHANGE]
    await caller(request, gateway, exchange)
    facts = gateway.quality.facts
    if facts is None:
        raise APIError(
            404, "Feedback is off on this router (quality.feedback.enabled).", code="feedback_disabled"
        )
    raw = await read_json(
        request.headers, request.receive, gateway.body_limits, timed="aws.event" not in request.scope
    )
    body = FeedbackBody.parse(raw)
    try:
        fact = await facts.read(body.request_id)
        if fact is None or fact.key != exchange.line.key:
            raise not_found(body.request_id)
        if not fact.open or not await facts.claim(body.request_id):
            raise APIError(
                409,
                f"Request {body.request_id!r} already has its feedback.",
                code="feedback_exists",
                param="request_id",
            )
        await count(gateway, facts, body, fact)
    except StoreError as exc:
        raise APIError(503, f"state store unreachable: {exc}", code="store_unavailable") from None
    gateway.access_log.write(log_record(gateway, body, fact))
    return JSONResponse(
        {"object": "feedback", "request_id": body.request_id, "score": body.score, "counted": True}
    )


async def count(gateway: Gateway, facts: Facts, body: FeedbackBody, fact: Fact) -> None:
    """One `store.add` to today's quality item; the claim is given back if it fails."""
    deltas = feedback_deltas(fact.dims(), body.score)
    if not deltas:  # an answer without a tier, rule or model: nothing to count it on
        return
    spec = gateway.rules.spec
    day_start = spec.budgets.day_start_hour
    day = day_key(time.time(), day_start)
    try:
        await gateway.store.add(
            item_key(day), deltas, expires_at=item_expiry(day, spec.quality.retention_days, day_start)
        )
    except StoreError:
        try:
            await facts.reopen(body.request_id)
        except StoreError as exc:
            log.warning("feedback on %s was claimed but not counted: %s", body.request_id, exc)
        raise


def log_record(gateway: Gateway, body: FeedbackBody, fact: Fact) -> dict[str, Any]:
    """The feedback line (the shared contract of docs/quality-loop.md)."""
    comment = body.comment
    if comment is not None:
        comment = gateway.redactor.text(comment)[:MAX_COMMENT_CHARS]
    return {
        "type": "feedback",
        "request_id": body.request_id,
        "key": fact.key,
        "tier": fact.tier,
        "rule": fact.rule,
        "model": fact.model,
        "arm": fact.arm,
        "score": body.score,
        "label": body.label,
        "comment": comment,
    }
