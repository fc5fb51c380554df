"""Held-back streams: a streamed answer validated before its first byte goes out.

With `cascade: {stream: hold}`, a streamed request's answer is read whole from the provider
(recovered mid-stream as usual), kept, and validated like a plain answer; only then does the
client get it — every frame at once, exactly as the provider streamed them — or, when it
fails, the escalation tier's answer instead. The cost is latency: the client's first byte
waits for the whole answer (time to first token becomes the answer's full generation time;
see bench/RESULTS.md), so hold-back is opt-in, for callers that stream out of habit but need
a checked answer (JSON, tool calls).

Validators that can decide on the text so far (`Validator.early`: a refusal at the start, a
forbidden pattern) decide as soon as they can: the escalation starts without waiting for the
rest. The first answer is then kept open (paused, not read) until the escalation tier has
answered; if it cannot, the first answer is read to its end and served after all, its failure
in `x-router-validation` — an answer is never lost to a cascade.

`Assembly` is a `StreamState` (what the client is sent, chunk by chunk) that also keeps the
whole answer: every choice's text, tool calls and finish reason, as a `validators.Reply`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tier_router.admission import SpendControls
from tier_router.cascade import Escalation, checked, may_escalate
from tier_router.fallback import AllCandidatesFailed, UpstreamClientError
from tier_router.gateway import Gateway
from tier_router.lifecycle import Exchange
from tier_router.recovery import Resume, used_so_far
from tier_router.request_line import Outcome
from tier_router.responses import answer_events, cascade_headers, event_stream, served_headers
from tier_router.routing.engine import Decision
from tier_router.stream_state import StreamState
from tier_router.validators import Ask, Choice, Failure, Reply, ToolCall, Validator

EARLY_EVERY_CHARS = 16
"""Early checks look at the text each time it has grown by half (at least this many
characters): a check rereads the text, and looking at every chunk of a long answer would
cost O(n²). A refusal at the start is still caught within its first few chunks."""


class Assembly(StreamState):
    """A stream's state, plus the whole answer as it arrives."""

    __slots__ = ("calls", "reasons", "refusals", "text_chars", "texts")

    def __init__(self, choices: int = 1) -> None:
        super().__init__(choices)
        self.texts: dict[int, list[str]] = {}
        self.calls: dict[int, dict[int, list[Any]]] = {}
        """choice → tool call index → [name, argument pieces...]."""
        self.reasons: dict[int, str] = {}
        self.refusals: dict[int, list[str]] = {}
        self.text_chars = 0
        """Characters of choice 0's text so far."""

    def observe(self, chunk: dict[str, Any]) -> None:
        super().observe(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            index = index if type(index) is int else 0
            delta = choice.get("delta")
            if isinstance(delta, dict):
                text = delta.get("content")
                if isinstance(text, str) and text:
                    self.texts.setdefault(index, []).append(text)
                    if index == 0:
                        self.text_chars += len(text)
                refusal = delta.get("refusal")
                if isinstance(refusal, str) and refusal:
                    self.refusals.setdefault(index, []).append(refusal)
                for call in delta.get("tool_calls") or ():
                    self._call(index, call)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.reasons[index] = reason

    def observe_text(self, chunk: dict[str, Any], text: str) -> None:
        """The common chunk (`stream.text_delta`): choice 0's text, and nothing else."""
        super().observe_text(chunk, text)
        if text:
            self.texts.setdefault(0, []).append(text)
            self.text_chars += len(text)

    def _call(self, index: int, call: Any) -> None:
        if not isinstance(call, dict):
            return
        position = call.get("index", 0)
        entry = self.calls.setdefault(index, {}).setdefault(position if type(position) is int else 0, [""])
        function = call.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str) and function["name"]:
                entry[0] = function["name"]
            if isinstance(function.get("arguments"), str):
                entry.append(function["arguments"])

    def first_text(self) -> str:
        return "".join(self.texts.get(0, ()))

    def reply(self) -> Reply:
        indexes = sorted({*self.texts, *self.calls, *self.reasons, *self.refusals}) or [0]
        return Reply(
            tuple(
                Choice(
                    "".join(self.texts.get(i, ())),
                    tuple(
                        ToolCall(parts[0], "".join(parts[1:]))
                        for _, parts in sorted(self.calls.get(i, {}).items())
                    ),
                    self.reasons.get(i),
                    "".join(self.refusals[i]) if i in self.refusals else None,
                )
                for i in indexes
            )
        )


def early_failure(checks: tuple[Validator, ...], state: Assembly, ask: Ask) -> Failure | None:
    """A check that can already tell, from choice 0's text so far (single-choice answers)."""
    if state.choices != 1:
        return None
    text = state.first_text()
    for check in checks:
        if check.applies(ask):
            reason = check.early(text, ask)
            if reason is not None:
                return Failure(check.name, reason)
    return None


class HeldAnswer:
    """One stream's frames, read ahead of the client until a verdict.

    `verdict()` reads until the answer is complete (or ended with an error event), or an early
    check fails; `rest()` reads what is left (after a verdict the escalation could not act on).
    `close()` abandons the stream; the generator's own cleanup closes the upstream.
    """

    def __init__(self, frames: AsyncIterator[bytes], state: Assembly, checks: tuple[Validator, ...]) -> None:
        self.frames: list[bytes] = []
        self._source = frames
        self.state = state
        self.checks = checks
        self.ended = False

    async def verdict(self, ask: Ask, *, complete: Any) -> Failure | None:
        """The first failure, or None. `complete()` says whether the answer ended complete (the
        exchange's outcome): an answer cut by an error event is not validated — it is served
        as it is, the error event telling the client."""
        next_look = EARLY_EVERY_CHARS
        async for frame in self._source:
            self.frames.append(frame)
            if self.state.text_chars >= next_look:  # a geometric cadence: O(n log n) in all
                failure = early_failure(self.checks, self.state, ask)
                if failure is not None:
                    return failure
                next_look = max(EARLY_EVERY_CHARS, self.state.text_chars + self.state.text_chars // 2)
        self.ended = True
        return await checked(self.checks, self.state.reply(), ask) if complete() else None

    async def rest(self) -> list[bytes]:
        if not self.ended:
            async for frame in self._source:
                self.frames.append(frame)
            self.ended = True
        return self.frames

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._source.aclose()  # type: ignore[attr-defined]


async def replay(frames: list[bytes]) -> AsyncIterator[bytes]:
    """A held answer as the client's body: everything in one send."""
    yield b"".join(frames)


# -- the flow: a held stream, escalated while it fails -------------------------------------------


async def held_stream(
    request: Request,
    gateway: Gateway,
    exchange: Exchange,
    body: dict[str, Any],
    headers: dict[str, str],
    include_usage: bool,
    ends: float,
) -> Response:
    """Serve `exchange.stream` held back (its decision's cascade says `stream: hold`), escalating
    while its answers fail; the last tier streams live unless its own cascade holds too."""
    decision, opened = exchange.decision, exchange.stream
    assert decision is not None
    assert opened is not None
    assert decision.cascade is not None
    spend, forwarder, rules = gateway.spend, gateway.forwarder, gateway.rules
    limit = rules.spec.routing.max_stream_recoveries
    cascade, ask = decision.cascade, Ask.of(body)
    exchange.line.cascade = cascade.to
    escalations: list[Escalation] = []
    while True:
        state = Assembly(opened.state.choices)
        opened.state = state
        resume = Resume(forwarder, spend, decision, body, include_usage, limit)
        exchange.ended(Outcome.CLIENT_GONE, 200)  # until the answer says otherwise
        held = HeldAnswer(answer_events(exchange, opened, spend, resume), state, cascade.checks)
        served: Failure | None = None
        try:
            with gateway.disconnects.request(request.scope, request.receive):
                failure = await held.verdict(ask, complete=lambda: exchange.line.outcome is Outcome.OK)
                better = None
                if failure is not None and may_escalate(cascade, exchange.tiers):
                    escalated = rules.escalate(decision, failure.header())
                    try:
                        better = await forwarder.open_stream(escalated, body, include_usage, ends=ends)
                    except (AllCandidatesFailed, UpstreamClientError) as exc:
                        exchange.attempts = [*exchange.attempts, *exc.attempts]
                if failure is not None and better is None:  # served as it is, its failure said
                    served, failure = failure, None
                    exchange.line.validation = served.header()
                    await held.rest()
        except BaseException:
            await held.close()
            raise
        if failure is None:
            headers.update(cascade_headers(escalations, served, decision))
            headers.update(served_headers(exchange.route or opened.route, exchange.attempts))
            return held_response(held.frames, headers)
        escalation = abandoned(exchange, decision, failure, spend)
        escalations.append(escalation)
        exchange.escalate(escalation, escalated)
        exchange.stream = opened = better  # from here on, lifecycle closes (and prices) this one
        await asyncio.shield(held.close())  # the failed answer's connection, whatever happens now
        better.state.choices = state.choices
        exchange.served_by(better.route, [*exchange.attempts, *better.attempts])
        headers.update(cascade_headers(escalations, None, escalated))
        headers.update(served_headers(better.route, exchange.attempts))
        headers.update(better.headers)
        decision = escalated
        if decision.cascade is None or not decision.cascade.hold_stream:
            resume = Resume(forwarder, spend, decision, body, include_usage, limit)
            return event_stream(exchange, better, spend, headers, resume)
        cascade = decision.cascade


def abandoned(exchange: Exchange, decision: Decision, failure: Failure, spend: SpendControls) -> Escalation:
    """The held answer that failed, priced: from its usage when it came (`on_usage` priced it,
    recoveries included), else from what it streamed (flagged estimated)."""
    current = exchange.stream
    assert current is not None
    if exchange.usage is not None:
        usage, cost, estimated = exchange.usage, exchange.cost, False
    else:
        usage, cost, estimated = used_so_far(current, decision, spend)
    exchange.usage, exchange.cost = None, None
    return Escalation(decision, current.route, failure, usage, cost, list(current.attempts), estimated)


def held_response(frames: list[bytes], headers: dict[str, str]) -> Response:
    headers["cache-control"] = "no-cache"
    headers["x-accel-buffering"] = "no"
    return StreamingResponse(replay(frames), headers=headers, media_type="text/event-stream")
