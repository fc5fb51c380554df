"""What the client gets back: answers, streams and errors, with their `x-router-*` headers.

Nothing here settles or logs: responses only fill the request's `Exchange` (the outcome, the
usage as it arrives), and `lifecycle` does the bookkeeping once, whatever the client does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse

from tier_router.admission import SpendControls
from tier_router.errors import APIError
from tier_router.fallback import Attempt
from tier_router.lifecycle import Exchange
from tier_router.provider_keys import redact
from tier_router.providers.base import dumps
from tier_router.recovery import RECOVERABLE, Resume
from tier_router.request_line import Outcome
from tier_router.routing.engine import Decision, ModelRoute
from tier_router.spend.pricing import usd
from tier_router.stream import OpenedStream
from tier_router.stream_state import add_usage

if TYPE_CHECKING:
    from tier_router.cascade import Escalation
    from tier_router.validators import Failure

DONE = b"data: [DONE]\n\n"
JSON = "application/json"


def error_response(exc: APIError, extra_headers: Mapping[str, str] | None = None) -> Response:
    headers = {**exc.headers, **(extra_headers or {})}
    return Response(json.dumps(exc.body()).encode(), status_code=exc.status, headers=headers, media_type=JSON)


def decision_headers(decision: Decision) -> dict[str, str]:
    headers = {
        "x-router-tier": decision.tier or "",
        "x-router-rule": decision.label,
        "x-router-priority": decision.priority,
    }
    if decision.arm is not None:
        headers["x-router-experiment"] = decision.experiment or ""
        headers["x-router-arm"] = decision.arm
    return headers


MAX_VALIDATION_HEADER = 300


def cascade_headers(
    escalations: Sequence[Escalation], failure: Failure | None, served: Decision
) -> dict[str, str]:
    """What a cascade did: the tier the request was escalated from, and which validator failed
    (the first escalation's, else the served answer's own failure). The tier header names the
    tier that answered."""
    headers = {"x-router-tier": served.tier or ""}
    if escalations:
        headers["x-router-escalated-from"] = escalations[0].decision.tier or ""
        failure = escalations[0].failure
    if failure is not None:
        headers["x-router-validation"] = validation_header(failure)
    return headers


def validation_header(failure: Failure) -> str:
    """`x-router-validation`: "validator: reason", ASCII (a header), at most 300 characters."""
    text = failure.header()[:MAX_VALIDATION_HEADER]
    return text.encode("ascii", "backslashreplace").decode("ascii")


def served_headers(route: ModelRoute, attempts: list[Attempt]) -> dict[str, str]:
    return {
        "x-router-model": route.name,
        "x-router-provider": route.provider_name,
        "x-router-attempts": str(sum(a.tried for a in attempts)),
    }


def cost_header(cost: int | None) -> dict[str, str]:
    return {} if cost is None else {"x-router-cost-usd": usd(cost)}


def answer(content: bytes, headers: dict[str, str]) -> Response:
    return Response(content, headers=headers, media_type=JSON)


def event_stream(
    exchange: Exchange,
    opened: OpenedStream,
    spend: SpendControls,
    headers: dict[str, str],
    resume: Resume | None = None,
) -> StreamingResponse:
    """The provider's stream as the client's SSE response. If the client leaves mid-way the
    body is simply abandoned: the exchange keeps `client_gone` and `lifecycle` closes the
    upstream and prices what was streamed. A stream that fails after content may be finished
    by the next candidate (`recovery`, with `resume`)."""
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    exchange.ended(Outcome.CLIENT_GONE, 200)  # until the stream says otherwise
    return StreamingResponse(
        answer_events(exchange, opened, spend, resume), headers=headers, media_type="text/event-stream"
    )


async def answer_events(
    exchange: Exchange, opened: OpenedStream, spend: SpendControls, resume: Resume | None
) -> AsyncIterator[bytes]:
    """The SSE frames of one answer, recovered mid-stream when it can be, ending with `[DONE]`
    or an error event; fills the exchange (outcome, usage, cost) as it goes."""
    current = opened

    def on_usage(chunk: dict[str, Any]) -> None:
        """The final usage chunk: priced here, and the client sees the cost in it (of every
        attempt that streamed a part of the answer)."""
        usage = chunk["usage"]
        exchange.cost = cost = spend.price(current.route, usage)
        if current.carried_usage is not None:
            usage = add_usage(current.carried_usage, usage)
            cost = exchange.cost = None if cost is None else cost + current.carried_cost
        exchange.usage = usage
        shown = exchange.total_cost(cost)  # with what escalated answers cost (a cascade)
        if shown is not None:
            chunk["usage"] = {**usage, "cost_usd": shown / 1_000_000}

    completed = False

    def on_complete() -> bytes:
        """The answer is complete: the outcome is set before the client can see `[DONE]` (a
        client may close there), which goes in the same send as the last chunks."""
        nonlocal completed
        completed = True
        exchange.ended(Outcome.OK)
        return DONE

    try:
        while True:
            try:
                async for frame in current.frames(on_usage, on_complete):
                    yield frame
                break
            except RECOVERABLE:
                if resume is None or not resume.can_recover(current):
                    raise
                taken, attempts = await resume.take_over(current)
                exchange.attempts = [*exchange.attempts, *attempts]
                if taken is None:
                    raise
                exchange.stream = current = taken
                exchange.route = taken.route
        if not completed:  # a stream that ended without a word (no upstream left to read)
            exchange.ended(Outcome.OK)  # before the end marker: a client may close at [DONE]
            yield DONE
    except RECOVERABLE as exc:
        exchange.ended(Outcome.STREAM_INTERRUPTED)
        failed = f"The provider's stream failed after it started: {str(exc) or exc.__class__.__name__}"
        message = redact(current.redactor.text(failed))
        error = {
            "error": {
                "message": message,
                "type": "upstream_error",
                "param": None,
                "code": "stream_interrupted",
            }
        }
        yield b"data: " + dumps(error) + b"\n\n"
    except Exception:
        exchange.ended(Outcome.ERROR)
        raise
