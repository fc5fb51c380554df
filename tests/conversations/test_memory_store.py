"""`conversations.Conversations` on every store backend: each turn placed by a NEW instance (a
new process: nothing but the store carries the conversation), store calls counted, and a
failing or slow store costing stickiness, never the request."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tier_router.conversations import Conversations
from tier_router.lifecycle import Exchange
from tier_router.request_line import Outcome, RequestLine
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import Stick
from tier_router.store.base import Store
from tier_router.store.deadline import DeadlineStore
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock
from tests.support.rules import three_providers
from tests.support.stores import Counting, Faulty

pytestmark = pytest.mark.anyio
RULES: Rules = parse_rules(
    {
        **three_providers(),
        "rules": [{"name": "long-chat", "tier": "smart", "when": {"conversation_tokens": {"min": 150}}}],
    },
    "test-rules.yaml",
)


def body(turns: int, opening: str = "What is a prime number?") -> dict[str, Any]:
    """A conversation's `turns`-th request: the opening, then growing earlier turns."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    messages.append({"role": "user", "content": opening})
    for i in range(1, turns):
        messages.append({"role": "assistant", "content": f"Answer {i}. " + "detail " * 30})
        messages.append({"role": "user", "content": f"Follow-up {i}?"})
    return {"model": "auto", "messages": messages}


async def one_turn(
    store: Store, clock: FakeClock, request: dict[str, Any], *, serve: int = 0, scope: str = "team-a"
) -> tuple[Decision, Exchange]:
    """One turn on a fresh `Conversations`: placed, answered by the decision's candidate
    number `serve` (1: the first failed over), noted and remembered."""
    conversations = Conversations(store, RULES, clock=clock)
    decision, turn = await conversations.place(RULES.decide(parse_chat(request)), request, {}, scope)
    exchange = Exchange(RequestLine("r"), 0.0, decision=decision, turn=turn)
    exchange.route = decision.candidates[serve]
    exchange.usage = {"prompt_tokens": 40 * len(request["messages"]), "completion_tokens": 20}
    exchange.line.outcome = Outcome.OK
    conversations.note(exchange)
    await conversations.remember(exchange)
    return decision, exchange


async def test_a_conversation_is_carried_by_the_store_alone(store: Store, clock: FakeClock) -> None:
    counted = Counting(store)
    first, _ = await one_turn(counted, clock, body(1))
    assert (first.conversation.stick, first.candidates[0].name) == (Stick.NEW, "primary")
    assert (counted.calls["get"], counted.writes) == (0, 0)  # a first turn where its rules sent it:
    # nothing read, nothing written (the next turn re-decides it)
    for turns in range(2, 6):
        clock.advance(10)
        decision, _ = await one_turn(counted, clock, body(turns))
        assert decision.conversation.stick is Stick.KEPT, turns
        assert (decision.tier, decision.candidates[0].name) == ("fast", "primary")
    assert RULES.decide(parse_chat(body(5))).tier == "smart"  # the rules alone: a rule boundary
    assert counted.calls["get"] == 4  # one read per later turn
    assert counted.writes == 1  # the second turn's; kept turns within the refresh interval write nothing


async def test_single_turn_traffic_reads_and_writes_nothing(store: Store, clock: FakeClock) -> None:
    counted = Counting(store)
    for i in range(5):
        await one_turn(counted, clock, body(1, opening=f"Classify ticket {i}."))
    assert (counted.calls["get"], counted.writes) == (0, 0)


async def test_a_first_turn_that_failed_over_is_written_and_placed_by_the_store(
    store: Store, clock: FakeClock
) -> None:
    counted = Counting(store)
    await one_turn(counted, clock, body(1), serve=1)  # primary failed: secondary answered turn 1
    assert counted.writes == 1
    decision, _ = await one_turn(counted, clock, body(2))
    assert decision.conversation.stick is Stick.KEPT
    assert "inferred" not in decision.conversation.as_dict()
    assert decision.candidates[0].name == "secondary"


async def test_a_second_turn_re_decides_the_first_across_a_rule_boundary(
    store: Store, clock: FakeClock
) -> None:
    """The first turn is short (tier fast); the second, long enough for `long-chat` (smart), is
    placed where the first went without anything stored: the first turn re-decided."""
    await one_turn(store, clock, body(1))
    long_second = body(1)
    long_second["messages"] += [
        {"role": "assistant", "content": "A prime has two divisors. " * 40},
        {"role": "user", "content": "Why?"},
    ]
    assert RULES.decide(parse_chat(long_second)).tier == "smart"
    decision, _ = await one_turn(store, clock, long_second)
    assert decision.conversation.stick is Stick.KEPT
    assert decision.conversation.inferred
    assert (decision.tier, decision.candidates[0].name) == ("fast", "primary")
    assert decision.conversation.estimate is not None
    assert decision.conversation.estimate.warm is False  # the first turn's time is unknown


async def test_a_failover_is_remembered_and_a_refresh_rewrites_the_memory(
    store: Store, clock: FakeClock
) -> None:
    counted = Counting(store)
    await one_turn(counted, clock, body(1))
    clock.advance(5)
    await one_turn(counted, clock, body(2), serve=1)  # primary failed: secondary answered
    assert counted.writes == 1  # the move was written
    clock.advance(5)
    decision, _ = await one_turn(counted, clock, body(3))
    assert [r.name for r in decision.candidates] == ["secondary", "primary"]
    clock.advance(Conversations(store, RULES).policy.refresh_s)
    await one_turn(counted, clock, body(4))
    assert counted.writes == 2  # refreshed: the memory's time stays near the last turn


async def test_conversations_with_other_prefixes_or_tenants_are_independent(
    store: Store, clock: FakeClock
) -> None:
    await one_turn(store, clock, body(1))
    await one_turn(store, clock, body(2), serve=1)  # this conversation moved to secondary
    other_prefix, _ = await one_turn(store, clock, body(2, opening="Tell me a joke."))
    other_tenant, _ = await one_turn(store, clock, body(2), scope="team-b")
    same, _ = await one_turn(store, clock, body(3))
    assert other_prefix.candidates[0].name == "primary"
    assert other_prefix.conversation.inferred  # nothing stored for it: its own first turn
    assert other_tenant.candidates[0].name == "primary"
    assert same.candidates[0].name == "secondary"


async def test_the_memory_expires_after_its_ttl(store: Store, clock: FakeClock) -> None:
    await one_turn(store, clock, body(1))
    await one_turn(store, clock, body(2), serve=1)
    clock.advance(3600 + 1)
    decision, _ = await one_turn(store, clock, body(3))  # the failover is forgotten: the first
    assert decision.conversation.inferred  # turn, re-decided, places it
    assert decision.candidates[0].name == "primary"


@pytest.mark.parametrize("mode", ["down", "slow"])
async def test_a_failing_or_slow_store_costs_stickiness_not_the_request(
    mode: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    faulty = Faulty("ok", delay_s=0.5)
    store = DeadlineStore(faulty, 0.05)
    await one_turn(store, clock, body(1))
    await one_turn(store, clock, body(2), serve=1)
    faulty.mode = mode
    with caplog.at_level(logging.WARNING):
        decision, exchange = await one_turn(store, clock, body(3))  # remember's write fails too
    assert decision.conversation.stick is Stick.UNREAD
    assert [r.name for r in decision.candidates] == ["primary", "secondary"]  # the rules' own
    assert "conversations" in caplog.text
    assert exchange.turn is not None
    assert exchange.turn.moved is None  # the unread turn remembers nothing, moves nothing:
    faulty.mode = "ok"
    after, _ = await one_turn(store, clock, body(4))  # the memory from before the outage stands
    assert after.candidates[0].name == "secondary"


async def test_an_unanswered_turn_is_not_remembered(clock: FakeClock) -> None:
    store = Counting(Faulty("ok"))
    conversations = Conversations(store, RULES, clock=clock)
    request = body(1)
    decision, turn = await conversations.place(RULES.decide(parse_chat(request)), request, {}, None)
    exchange = Exchange(RequestLine("r"), 0.0, decision=decision, turn=turn)
    exchange.line.outcome = Outcome.FAILED
    conversations.note(exchange)
    await conversations.remember(exchange)
    assert store.writes == 0


async def test_a_garbage_item_reads_as_no_memory(store: Store, clock: FakeClock) -> None:
    conversations = Conversations(store, RULES, clock=clock)
    request = body(2)
    _, turn = await conversations.place(RULES.decide(parse_chat(request)), request, {}, None)
    assert turn is not None
    await store.put(conversations.key(turn.conversation), {"tier": "smart", "model": 7})
    decision, _ = await Conversations(store, RULES, clock=clock).place(
        RULES.decide(parse_chat(request)), request, {}, None
    )
    assert decision.conversation.inferred  # the item is ignored; the first turn re-decided


async def test_this_processs_last_turn_expires_with_the_memory(clock: FakeClock) -> None:
    """One process (one `Conversations`): after `ttl_s` its own record of the last turn is as
    forgotten as the store's item."""
    conversations = Conversations(MemoryStore(clock=clock), RULES, clock=clock)

    async def turn(request: dict[str, Any], serve: int = 0) -> Decision:
        decision, placed = await conversations.place(RULES.decide(parse_chat(request)), request, {}, None)
        exchange = Exchange(RequestLine("r"), 0.0, decision=decision, turn=placed)
        exchange.route = decision.candidates[serve]
        exchange.line.outcome = Outcome.OK
        conversations.note(exchange)
        await conversations.remember(exchange)
        return decision

    await turn(body(1))
    await turn(body(2), serve=1)  # moved to secondary
    assert (await turn(body(3))).candidates[0].name == "secondary"
    clock.advance(3600 + 1)
    assert (await turn(body(4))).candidates[0].name == "primary"  # the first turn, re-decided
