"""Replay places turns exactly as the router does: the same turns through the router's own
`tier_router.conversations.Conversations` (a memory store on a fake clock; nothing fails, so
the first candidate answers) and through replay's `Sticky` pick the same model every turn."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tier_router.conversations import Conversations
from tier_router.replay.conversations import Sticky
from tier_router.replay.pricing import Rate
from tier_router.request_line import Outcome, RequestLine
from tier_router.routing.conversation import identify
from tier_router.routing.engine import Rules
from tier_router.routing.request import parse_chat
from tier_router.store.memory import MemoryStore

from tests.replay_conversations.logs import START, turns, write_rules

CONVERSATIONS: list[tuple[list[str], list[float]]] = [
    (
        ["Why do ships float?", "Ok.", "Why do they rust?", "Ok.", "More.", "Fine."],
        [0, 60, 120, 700, 760, 4900],
    ),
    (["Tell me about the sea.", "Why is it salty?", "I see.", "Why blue?", "Nice."], [5, 65, 400, 460, 520]),
    (["Hello.", "And then?", "Go on.", "More.", "Thanks!", "Bye."], [10, 70, 130, 190, 250, 310]),
]


def router_models(rules: Rules, schedule: list[tuple[float, dict[str, Any]]]) -> list[str]:
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0])
    router = Conversations(store, rules, clock=lambda: now[0])

    async def go() -> list[str]:
        served = []
        for at, body in schedule:
            now[0] = at
            decision, turn = await router.place(rules.decide(parse_chat(body), {}), body, {}, "")
            route = decision.candidates[0]
            prompt = decision.features.conversation_tokens
            line = RequestLine("r", outcome=Outcome.OK)
            usage = {"prompt_tokens": prompt, "completion_tokens": 300}
            exchange = SimpleNamespace(turn=turn, decision=decision, route=route, line=line, usage=usage)
            await router.remember(exchange)  # type: ignore[arg-type]
            served.append(route.name)
        return served

    return asyncio.run(go())


def replay_models(rules: Rules, schedule: list[tuple[float, dict[str, Any]]]) -> list[str]:
    sticky = Sticky(rules, {name: Rate.of(r.price) for name, r in rules.routes.items()})
    served = []
    for at, body in schedule:
        decision = rules.decide(parse_chat(body), {})
        label, route = sticky.turn(
            decision, body, {}, "", (at, True), (decision.features.conversation_tokens, 300)
        )
        assert label == identify(body, {}, "").label
        assert route is not None
        served.append(route.name)
    return served


@pytest.mark.parametrize(
    "options",
    [
        {"max_messages": 6},
        {"max_messages": 50},
        {"max_messages": 50, "sticky_short": False},
        {
            "max_messages": 6,
            "conversations": "conversations: {cache_aware: false, ttl_s: 600, cache_ttl_s: 100}",
        },
        {"max_messages": 6, "conversations": "conversations: {sticky: false}", "sticky_hard": True},
    ],
    ids=["boundary", "alternating", "short-not-sticky", "not-cache-aware", "file-off-hard-on"],
)
def test_replay_places_every_turn_as_the_router(tmp_path: Path, options: dict[str, Any]) -> None:
    rules = write_rules(tmp_path / "rules.yaml", **options)
    schedule = sorted(
        (START + at, body)
        for texts, times in CONVERSATIONS
        for at, body in zip(times, turns(texts[0], *texts[1:]), strict=True)
    )
    router = router_models(rules, schedule)
    assert replay_models(rules, schedule) == router
    assert len(set(router)) > 1  # the schedule exercises more than one model
