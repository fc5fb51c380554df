"""Cascades: check an answer before it is returned, and when it fails, ask a better tier.

A decision may carry a `validators.Cascade` (from its rule, or its tier): after the chain
answers, the cascade's validators read the answer (`validators.validate`); on a failure the
request goes to the cascade's `to` tier — its whole chain, a fresh decision
(`Rules.escalate`) — and that tier's own cascade applies in turn (the loader refuses cycles).

What a failed answer is, and is not:
- not a provider failure: its attempt succeeded, the breakers counted it so, and nothing here
  tells them otherwise;
- an answer that was paid for: it is priced from its usage and carried on the exchange
  (`Exchange.escalate`) so the lifecycle settles both (or charges the reservation in full
  when either came without usage), and the reservation held at admission covers the whole
  cascade path (`SpendControls` sums each step's worst case);
- never lost: when every candidate of the escalation tier fails, the answer the router has is
  served after all, with its failure in `x-router-validation` (an answer beats a 502).

One deadline covers the cascade: each tier's attempts run within what is left of
`routing.deadline_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tier_router.fallback import AllCandidatesFailed, Attempt, UpstreamClientError
from tier_router.forwarder import Completion, Forwarder
from tier_router.lifecycle import Exchange
from tier_router.routing.engine import Decision, ModelRoute, Rules

if TYPE_CHECKING:
    from tier_router.validators import Ask, Cascade, Failure, Reply, Validator


@dataclass(slots=True)
class Escalation:
    """One answer that failed its cascade's validators and was escalated."""

    decision: Decision
    route: ModelRoute
    failure: Failure
    usage: dict[str, Any] | None
    cost: int | None
    """Micro-dollars; None when the provider sent no usage."""
    attempts: list[Attempt]
    estimated: bool = False
    """Priced from an estimate (a held-back stream that sent no usage)."""

    def as_dict(self, to: str) -> dict[str, Any]:
        """For the request line's `escalations` (no text of the prompt or the answer)."""
        usage = self.usage or {}
        return {
            "tier": self.decision.tier,
            "model": self.route.name,
            "provider": self.route.provider_name,
            "validator": self.failure.validator,
            "reason": self.failure.reason,
            "to": to,
            "cost_micro_usd": self.cost,
            "prompt_tokens": _int(usage.get("prompt_tokens")),
            "completion_tokens": _int(usage.get("completion_tokens")),
            "attempts": sum(a.tried for a in self.attempts),
        }


@dataclass(slots=True)
class Cascaded:
    """What `complete` ends with: the answer to serve and the decision that produced it."""

    decision: Decision
    completion: Completion
    escalations: list[Escalation]
    failure: Failure | None
    """The served answer's own failure, when it is served anyway (see the module docstring)."""


async def complete(
    forwarder: Forwarder,
    rules: Rules,
    price: Any,
    exchange: Exchange,
    body: dict[str, Any],
) -> Cascaded:
    """Forward `body` as `exchange.decision` says, then follow its cascade while answers fail.
    The exchange ends with the served answer in hand (`in_hand`) and every attempt.
    `price(route, usage) -> int | None`. Raises what `Forwarder.complete` raises for the
    first tier only: once an answer is in hand, the request is answered.

    The exchange holds the answer in hand at every step (its route, usage and cost) and each
    escalation as soon as its better answer comes: a client that leaves — or a cancellation —
    while a better tier is asked still settles what was paid for. A cascade never escalates
    past the tiers the caller's router key may use (`exchange.tiers`)."""
    decision = exchange.decision
    assert decision is not None
    ends = forwarder.deadline()
    completion = await forwarder.complete(decision, body, ends=ends, attempts=exchange.attempts)
    attempts = list(completion.attempts)
    in_hand(exchange, completion, attempts, price)
    escalations: list[Escalation] = []
    cascade = decision.cascade
    ask: Ask | None = None
    failure: Failure | None = None
    if cascade is not None:  # `validators` only for a decision with a cascade (docs/coldstart.md)
        from tier_router.validators import Ask, Reply
    while cascade is not None:
        ask = ask or Ask.of(body)
        failure = await checked(cascade.checks, Reply.of(completion.data), ask)
        if failure is None or not may_escalate(cascade, exchange.tiers):
            break
        exchange.line.validation = failure.header()  # until a better answer replaces it
        escalated = rules.escalate(decision, failure.header())
        try:
            better = await forwarder.complete(escalated, body, ends=ends)
        except (AllCandidatesFailed, UpstreamClientError) as exc:
            attempts += exc.attempts  # the answer in hand is served, its failure said
            break
        exchange.line.validation = None
        route, usage = completion.route, completion.data.get("usage")
        usage = usage if isinstance(usage, dict) else None
        escalation = Escalation(decision, route, failure, usage, price(route, usage), completion.attempts)
        escalations.append(escalation)
        exchange.escalate(escalation, escalated)
        attempts += better.attempts
        checks = cascade.checks
        decision, completion, cascade = escalated, better, escalated.cascade
        in_hand(exchange, completion, attempts, price)
        failure = None
        if cascade is None:  # the last tier: its answer is served; say if it fails the same checks
            failure = await checked(checks, Reply.of(completion.data), ask)
    exchange.attempts = attempts  # with a failed escalation's, when the answer in hand is served
    if failure is not None:
        exchange.line.validation = failure.header()
    return Cascaded(decision, completion, escalations, failure)


def may_escalate(cascade: Cascade, allowed: Collection[str] | None) -> bool:
    """A router key limited to some tiers is never escalated to another: its answer is served
    with its failure said, as when the escalation tier cannot answer."""
    return allowed is None or cascade.to in allowed


def in_hand(exchange: Exchange, completion: Completion, attempts: list[Attempt], price: Any) -> None:
    """The answer the request would be settled with, were it to end now."""
    exchange.served_by(completion.route, list(attempts))
    usage = completion.data.get("usage")
    exchange.usage = usage if isinstance(usage, dict) else None
    exchange.cost = price(completion.route, exchange.usage)


INLINE_CHARS = 32 * 1024
"""Answers up to this size (text and tool arguments) may be checked on the event loop."""
INLINE_TIME_S = 0.01
"""On the event loop, every schema check of one answer together within this (`time_limit`);
a check past it lets the answer pass (counted in `schemas.STATS.unfinished`)."""


async def checked(checks: tuple[Validator, ...], reply: Reply, ask: Ask) -> Failure | None:
    """`validate`, in a worker thread when a schema of this request is new or the answer is
    large: a schema's first compile (fastjsonschema generates code: ~5 ms for a small schema,
    up to ~0.2 s at the size bound) or reading a large answer must not stall every other
    request on the event loop. Later requests with the same schema and a small answer are
    checked inline (tens of µs), their schema checks held to INLINE_TIME_S: what a hostile
    schema can make one check cost is bounded by time only (see `validators.time_limit`)."""
    from tier_router.validators.schemas import CHECK_TIME_S, is_compiled

    active = [check for check in checks if check.applies(ask)]
    schemas = [s for check in active for s in check.schemas(ask)]
    if size(reply) > INLINE_CHARS or not all(is_compiled(s) for s in schemas):
        return await asyncio.to_thread(within, CHECK_TIME_S, checks, reply, ask)
    return within(INLINE_TIME_S, checks, reply, ask)


def within(seconds: float, checks: tuple[Validator, ...], reply: Reply, ask: Ask) -> Failure | None:
    """`validate`, every schema check of the answer (all its choices and tool calls) together
    within `seconds`."""
    from tier_router.validators import validate
    from tier_router.validators.time_limit import time_limit

    with time_limit(seconds):
        return validate(checks, reply, ask)


def size(reply: Reply) -> int:
    return sum(len(c.text) + sum(len(t.arguments) for t in c.tool_calls) for c in reply.choices)


def _int(value: object) -> int | None:
    return value if type(value) is int else None
