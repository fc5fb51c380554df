"""One request's lifecycle: an id first, then exactly one settle and one log line, whatever happens.

    exchange = lifecycle.begin(scope)          # the request id, the clock
    try:
        ... the endpoint fills exchange: key, decision, admission, route, usage, outcome ...
        ... the response is sent (a stream may be cut off anywhere by the client) ...
    finally:
        await lifecycle.finish(exchange)       # close the upstream, price, settle, log: once

`app.RouterApp` holds the only `try/finally`. What `finish` does runs in its own task, so the
client going away cannot cancel it: the ASGI server cancels (or, in Starlette's streaming
response, cancel-scopes) the response task when the client disconnects, and any `await` in
that task's cleanup would be cancelled too — which is how streamed requests used to vanish
from the ledger and the log. Serving locally with `background_settle`, the response does not
wait for it (the connection is free at once); otherwise — and always on Lambda, where a
frozen container would never finish a background task — `finish` waits for it, shielded.
Tasks still running at shutdown are awaited by `Drainer.drain` (the app's lifespan) so that
SIGTERM loses nothing.

Pricing, in order: the provider's usage; for a stream the client left before usage arrived,
what was streamed (characters / 4) plus the prompt's estimate, flagged `cost_estimated`; 0
when nothing was forwarded or nothing can be billed (failures, refusals, cache hits).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tier_router.admission import Admission, SpendControls
from tier_router.fallback import Attempt
from tier_router.fallback import Outcome as AttemptOutcome
from tier_router.request_line import Outcome, RequestLine
from tier_router.routing.engine import Decision, ModelRoute
from tier_router.spend.pricing import cache_savings_micro_usd, cached_tokens
from tier_router.stream import OpenedStream
from tier_router.stream_state import add_usage
from tier_router.telemetry import AccessLog

if TYPE_CHECKING:
    from tier_router.cascade import Escalation
    from tier_router.conversations import Conversations, Turn
    from tier_router.providers.cache_hints import CacheWork
    from tier_router.quality.loop import QualityLoop
    from tier_router.quality.sampling import Sampled
    from tier_router.tracing.spans import Tracing

log = logging.getLogger("tier_router")

REQUEST_ID_PREFIX = os.urandom(6).hex()
REQUEST_COUNTER = itertools.count(1)
SETTLE_CONCURRENCY = 16
"""At most this many settles talk to the store at once; the rest wait their turn here. A burst
of finishes (hundreds of streams cut at once) would otherwise queue inside the store, where
the wait counts against each call's deadline and settles fail (seen: SQLite, 200 at once)."""
CHARS_PER_TOKEN = 4
"""For pricing a stream cut short: the usual English estimate, rounded up."""
ABANDONED = AttemptOutcome.ABANDONED
ANSWERED = AttemptOutcome.OK


def request_id_of(scope: dict[str, Any]) -> str:
    """Lambda's request id when there is one (so logs join up), else this process's random
    prefix and a counter: unique across processes and restarts, without a syscall per request."""
    context = scope.get("aws.context")
    return getattr(context, "aws_request_id", None) or f"{REQUEST_ID_PREFIX}{next(REQUEST_COUNTER):08x}"


@dataclass(slots=True)
class Exchange:
    """One request in flight: what the endpoint learned, for `finish`."""

    line: RequestLine
    started: float
    decision: Decision | None = None
    admission: Admission | None = None
    route: ModelRoute | None = None
    attempts: list[Attempt] = field(default_factory=list)
    stream: OpenedStream | None = None
    usage: dict[str, Any] | None = None
    cost: int | None = None
    completion: dict[str, Any] | None = None
    """A complete non-streamed answer, which the response cache may store."""
    tiers: tuple[str, ...] | None = None
    """The tiers the caller's router key may use (None: any): a cascade stays within them."""
    prior_cost: int | None = 0
    """What the answers a cascade escalated cost (micro-dollars; None when one came without
    usage): `finish` adds it to `cost`, the served answer's, before settling."""
    turn: Turn | None = None
    """The conversation this request is a turn of (`conversations`), remembered after the answer."""
    sampled: Sampled | None = None
    """Picked for judging at admission (`quality.sampling`): the reference tier, the body,
    and the served answer's text (non-streamed answers; a stream's is in its state)."""
    finished: bool = False

    @property
    def request_id(self) -> str:
        return self.line.request_id

    def routed(self, decision: Decision) -> None:
        self.decision = decision
        self.line.tier, self.line.rule, self.line.priority = decision.tier, decision.label, decision.priority
        self.line.experiment, self.line.arm = decision.experiment, decision.arm

    def admitted(self, admission: Admission) -> None:
        self.admission = admission
        self.routed(admission.decision)
        self.line.cache = admission.cache
        self.line.downgraded_from = admission.downgraded_from
        self.line.downgrade_reason = admission.downgrade_reason

    def escalate(self, escalation: Escalation, to: Decision) -> None:
        """An answer failed its cascade's validators and `to` (another tier) answers instead."""
        line = self.line
        if line.escalated_from is None:
            line.escalated_from = escalation.decision.tier or ""
        line.escalations.append(escalation.as_dict(to.tier or ""))
        if self.prior_cost is not None:
            self.prior_cost = None if escalation.cost is None else self.prior_cost + escalation.cost
        if escalation.estimated:
            line.cost_estimated = True
        self.decision = to
        line.tier = to.tier

    def total_cost(self, cost: int | None) -> int | None:
        """`cost` (the served answer's) plus what escalated answers cost: for headers."""
        return None if cost is None or self.prior_cost is None else cost + self.prior_cost

    def served_by(self, route: ModelRoute | None, attempts: list[Attempt]) -> None:
        self.route, self.attempts = route, attempts

    def ended(self, outcome: Outcome, status: int | None = None) -> None:
        self.line.outcome = outcome
        if status is not None:
            self.line.status = status


class Drainer:
    """Post-response work in flight, held by strong references until it is done."""

    def __init__(self) -> None:
        self.pending: set[asyncio.Task[None]] = set()

    def start(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return task

    async def drain(self, within_s: float = 10.0) -> None:
        """Wait for everything pending (shutdown; Lambda before an invocation returns)."""
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=within_s)


class Lifecycle:
    """One per process: begins exchanges and finishes each exactly once."""

    def __init__(
        self,
        spend: SpendControls,
        access_log: AccessLog,
        *,
        background: bool = False,
        quality: QualityLoop | None = None,
        drainer: Drainer | None = None,
        tracing: Tracing | None = None,
        conversations: Conversations | None = None,
    ) -> None:
        self.spend = spend
        self.conversations = conversations
        self.access_log = access_log
        self.background = background
        self.quality = quality if quality is not None and quality.active else None
        self.drainer = drainer or Drainer()
        """Post-response work: settles, and the quality loop's judgements (shared with it)."""
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self.tracing = tracing
        """OpenTelemetry (`TIER_ROUTER_OTEL=1`): the request's spans, built after its line."""

    def _settle_slot(self) -> asyncio.Semaphore:
        """This event loop's settle slots (an app may be driven by several loops: tests, Mangum)."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            self._slots = {loop: (slots := asyncio.Semaphore(SETTLE_CONCURRENCY))}
        return slots

    def begin(self, scope: dict[str, Any]) -> Exchange:
        line = RequestLine(request_id_of(scope), method=scope.get("method", ""), path=scope.get("path", ""))
        return Exchange(line, time.perf_counter())

    async def finish(self, exchange: Exchange, scope: dict[str, Any]) -> None:
        """Settle and log `exchange`, once. Never raises; cannot be cancelled half-way."""
        if exchange.finished:
            return
        exchange.finished = True
        exchange.line.latency_ms = round((time.perf_counter() - exchange.started) * 1000, 2)
        if exchange.turn is not None and self.conversations is not None:
            self.conversations.note(exchange)  # before any await: the next turn may be on its way
        task = self.drainer.start(self._finish(exchange, scope))
        if self.background and "aws.event" not in scope:
            return
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def _finish(self, exchange: Exchange, scope: dict[str, Any]) -> None:
        try:
            if exchange.stream is not None:
                await self._close_stream(exchange, exchange.stream)
            self._price(exchange)
            if exchange.prior_cost != 0 and exchange.route is not None:  # escalated answers too
                exchange.cost = exchange.total_cost(exchange.cost)
            note_usage(exchange)  # before the settle: its results count the tokens
            if exchange.admission is not None:
                async with self._settle_slot():
                    exchange.cost = await self.spend.settle(
                        exchange.admission,
                        exchange.route,
                        exchange.cost,
                        completion=exchange.completion,
                        line=exchange.line,
                    )
            if exchange.turn is not None and self.conversations is not None:
                await self.conversations.remember(exchange)
        except Exception:
            log.exception("settling request %s failed", exchange.request_id)
        finally:
            self._write(exchange)
            if self.tracing is not None:
                self.tracing.record(exchange, scope)
        if self.quality is not None:  # after the line: feedback facts, a sample for the judge
            try:
                await self.quality.finished(exchange)
            except Exception:
                log.exception("the quality loop failed on request %s", exchange.request_id)

    async def _close_stream(self, exchange: Exchange, stream: OpenedStream) -> None:
        try:
            await stream.aclose()
        except Exception as exc:  # the upstream connection is gone either way
            log.debug("closing the upstream stream of %s: %r", exchange.request_id, exc)
        exchange.line.bad_chunks = stream.bad_chunks
        exchange.line.recovered = stream.state.recovered
        if exchange.usage is None and stream.carried_usage is not None and stream.decoder.usage:
            cost = self.spend.price(stream.route, stream.decoder.usage)  # a recovered stream
            exchange.cost = None if cost is None else cost + stream.carried_cost
            exchange.usage = add_usage(stream.carried_usage, stream.decoder.usage)
        exchange.usage = exchange.usage or stream.decoder.usage
        if stream.carried_estimated:
            exchange.line.cost_estimated = True

    def _price(self, exchange: Exchange) -> None:
        """The cost to settle. None — the reservation in full, or 0 without one — when a
        provider answered without usage, or when nothing answered but an attempt was cut off in
        flight (`abandoned`: the provider may bill it): the conservative choice. A stream the
        client left before usage arrived is priced from what was streamed plus the prompt's
        estimate."""
        if exchange.route is None:  # nothing was forwarded, or nothing answered
            if exchange.cost is None and any(a.outcome is ABANDONED for a in exchange.attempts):
                exchange.line.cost_estimated = True
                return
            exchange.cost = exchange.cost or 0
        if exchange.cost is not None:
            return
        exchange.cost = self.spend.price(exchange.route, exchange.usage)
        if exchange.cost is not None:
            return
        exchange.line.cost_estimated = True
        stream, decision = exchange.stream, exchange.decision
        if stream is not None and decision is not None and exchange.line.outcome is Outcome.CLIENT_GONE:
            estimate = {
                "prompt_tokens": decision.features.conversation_tokens,
                "completion_tokens": -(-stream.streamed_chars // CHARS_PER_TOKEN),
            }
            exchange.cost = self.spend.price(exchange.route, estimate)
            if exchange.cost is not None:  # and what the stream it took over from used (a recovery)
                exchange.cost += stream.carried_cost

    def _write(self, exchange: Exchange) -> None:
        line = exchange.line
        if not self.access_log.enabled:
            return
        route, attempts = exchange.route, exchange.attempts
        if route is not None:
            line.model, line.provider = route.name, route.provider_name
            cache = _prompt_cache_work(attempts, route.name)
            if cache is not None:
                line.prompt_cache = cache.as_dict()
        if attempts:
            line.attempts = [a.as_dict() for a in attempts]
            line.upstream_ms = round(sum(a.elapsed_ms for a in attempts), 2)
        if exchange.admission is not None:
            line.cost_micro_usd = exchange.cost
        if exchange.decision is not None:
            line.features = exchange.decision.features.as_dict()
            placement = exchange.decision.conversation
            if placement is not None:
                line.conversation = placement.as_dict()
                moved = exchange.turn.moved if exchange.turn is not None else None
                if moved is not None:
                    line.conversation["moved_by"] = moved.value
        self.access_log.write(line.record())


def note_usage(exchange: Exchange) -> None:
    """The served answer's usage on its line: tokens, cached tokens and what they saved."""
    usage, line = exchange.usage, exchange.line
    if not isinstance(usage, dict):
        return
    line.prompt_tokens = _int(usage.get("prompt_tokens"))
    line.completion_tokens = _int(usage.get("completion_tokens"))
    line.cached_tokens = cached_tokens(usage) or None
    if line.cached_tokens and exchange.route is not None:
        line.cache_savings_micro_usd = cache_savings_micro_usd(exchange.route.price, usage) or None


def _prompt_cache_work(attempts: list[Attempt], model: str) -> CacheWork | None:
    """What was added for the prompt cache to the answered request: the last answered attempt
    of the model that served (an index walk: nothing allocated when nothing was added)."""
    i = len(attempts)
    while i:
        i -= 1
        attempt = attempts[i]
        if attempt.outcome is ANSWERED and attempt.model == model:
            return attempt.cache
    return None


def _int(value: object) -> int | None:
    return value if type(value) is int else None
