"""Driving `conversations.Conversations` turn by turn without HTTP, for the adversary tests:
each turn decided by the rules, placed, answered by one of its candidates, then noted and
remembered as the lifecycle does (or only noted, to remember later: a settle still in flight)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tier_router.conversations import Conversations
from tier_router.lifecycle import Exchange
from tier_router.request_line import Outcome, RequestLine
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.request import parse_chat
from tier_router.store.base import Store

FLAKY_THEN_STEADY: dict[str, Any] = {
    "version": 1,
    "providers": {
        "ok": {"kind": "mock", "base_url": "mock://ok"},
        "down": {"kind": "mock", "base_url": "mock://down?fail_rate=1"},
    },
    "models": {
        "flaky": {"provider": "down", "id": "mock-flaky", "price": {"input": 1.0, "output": 4.0}},
        "steady": {"provider": "ok", "id": "mock-steady", "price": {"input": 1.0, "output": 4.0}},
    },
    "tiers": {"main": ["flaky", "steady"]},
    "default_tier": "main",
}
"""One tier whose first model always fails (its provider is down) and whose second answers."""


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


async def placed(
    conversations: Conversations,
    request: dict[str, Any],
    *,
    scope: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[Decision, Exchange]:
    """The turn decided (with `scope` as the router key, as `endpoints.chat` does) and placed;
    its exchange not answered yet."""
    rules: Rules = conversations.rules
    decision = rules.decide(parse_chat(request), headers or {}, scope)
    decision, turn = await conversations.place(decision, request, headers or {}, scope)
    return decision, Exchange(RequestLine("r"), 0.0, decision=decision, turn=turn)


def answered(exchange: Exchange, serve: int = 0, prompt: int = 40, completion: int = 20) -> Exchange:
    """The exchange answered by its decision's candidate number `serve` (1: the first failed over)."""
    assert exchange.decision is not None
    exchange.route = exchange.decision.candidates[serve]
    exchange.usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    exchange.line.outcome = Outcome.OK
    return exchange


async def one_turn(
    store: Store,
    rules: Rules,
    request: dict[str, Any],
    *,
    serve: int = 0,
    scope: str | None = None,
    clock: Callable[[], float] | None = None,
    conversations: Conversations | None = None,
) -> tuple[Decision, Exchange]:
    """One whole turn, on `conversations` or on a new instance (a new process: only the store
    carries the conversation)."""
    if conversations is None:
        conversations = Conversations(store, rules, clock=clock) if clock else Conversations(store, rules)
    decision, exchange = await placed(conversations, request, scope=scope)
    answered(exchange, serve)
    conversations.note(exchange)
    await conversations.remember(exchange)
    return decision, exchange
