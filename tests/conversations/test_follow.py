"""`routing.stickiness.follow`: what a conversation's memory does to a turn's decision (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.routing.engine import Rules
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import Memory, Move, Policy, Stick, follow, moved_by, should_remember

from tests.support.rules import three_providers

NOW = 1_800_000_000.0


def rules(**sections: Any) -> Rules:
    doc = three_providers(**sections)
    doc["models"]["claude"]["price"]["cached_input"] = 0.3  # Anthropic's cache reads: 10% of input
    doc["rules"].append({"name": "long-chat", "tier": "smart", "when": {"conversation_tokens": {"min": 150}}})
    return parse_rules(doc, "test-rules.yaml")


def turn(r: Rules, text: str = "hello", model: str = "auto", **body: Any) -> Any:
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}]
    return r.decide(
        parse_chat({"model": model, "messages": [*messages, {"role": "user", "content": text}], **body})
    )


def placed(r: Rules, decision: Any, memory: Memory | None, now: float = NOW) -> Any:
    return follow(r, Policy.of(r), decision, "c0ffee", memory, now)


def names(decision: Any) -> list[str]:
    return [route.name for route in decision.candidates]


def test_no_memory_is_a_new_conversation_decided_by_the_rules() -> None:
    r = rules()
    decision = placed(r, turn(r), None)
    assert decision.conversation.stick is Stick.NEW
    assert names(decision) == ["primary", "secondary"]


def test_the_remembered_model_goes_first_in_the_same_tier() -> None:
    r = rules()
    decision = placed(r, turn(r), Memory("fast", "secondary", NOW - 5))
    assert decision.conversation.stick is Stick.KEPT
    assert names(decision) == ["secondary", "primary"]  # the rest of the chain is still the fallback
    assert decision.tier == "fast"


def test_a_warm_50k_prefix_stays_when_switching_costs_more() -> None:
    r = rules()
    decision = turn(r, "short again")  # the rules: tier fast, model primary ($1 input)
    warm = Memory("smart", "claude", NOW - 60, prompt_tokens=50_000, completion_tokens=200)
    stayed = placed(r, decision, warm)
    estimate = stayed.conversation.estimate
    assert stayed.conversation.stick is Stick.KEPT
    assert (stayed.tier, names(stayed)[0]) == ("smart", "claude")
    assert estimate.warm
    assert estimate.prefix_tokens == 50_000
    # stay: 50,000 cached x $0.3 + 200 out x $15 = 15,000 + 3,000 µ$; move: 50,000 x $1 + 200 x $4
    assert (estimate.stay, estimate.move) == (18_000, 50_800)
    assert "conversation kept on claude" in stayed.why


def test_the_same_prefix_gone_cold_moves_to_the_cheaper_model() -> None:
    r = rules()
    cold = Memory("smart", "claude", NOW - 301, prompt_tokens=50_000, completion_tokens=200)
    moved = placed(r, turn(r, "short again"), cold)
    assert moved.conversation.stick is Stick.MOVED
    assert moved.conversation.move is Move.RULE
    assert moved.conversation.estimate.warm is False
    assert (moved.conversation.estimate.stay, moved.conversation.estimate.move) == (153_000, 50_800)
    assert (moved.tier, names(moved)[0]) == ("fast", "primary")


def test_without_cache_awareness_a_conversation_always_stays() -> None:
    r = rules(conversations={"cache_aware": False})
    cold = Memory("smart", "claude", NOW - 3000, prompt_tokens=50_000, completion_tokens=200)
    stayed = placed(r, turn(r, "short again"), cold)
    assert (stayed.conversation.stick, stayed.tier, names(stayed)[0]) == (Stick.KEPT, "smart", "claude")
    assert stayed.conversation.estimate is None


def test_a_conversation_an_escalation_moved_up_stays_up_whatever_the_price() -> None:
    r = rules()
    up = Memory("smart", "claude", NOW - 3000, prompt_tokens=50_000, moved_by=Move.ESCALATION)
    stayed = placed(r, turn(r, "short again"), up)
    assert (stayed.conversation.stick, stayed.tier) == (Stick.KEPT, "smart")


def test_a_paced_conversation_is_re_decided() -> None:
    r = rules()
    paced = Memory("fast", "secondary", NOW - 5, moved_by=Move.PACING)
    decision = placed(r, turn(r, "prove it " * 10), paced)  # the rules now say smart
    assert (decision.conversation.stick, decision.conversation.move, decision.tier) == (
        Stick.MOVED,
        Move.PACING,
        "smart",
    )


def test_naming_another_tier_moves_the_conversation() -> None:
    r = rules()
    decision = placed(r, turn(r, model="smart"), Memory("fast", "primary", NOW - 5))
    assert (decision.conversation.stick, decision.conversation.move, decision.tier) == (
        Stick.MOVED,
        Move.CLIENT,
        "smart",
    )


def test_naming_a_model_is_not_sticky() -> None:
    r = rules()
    decision = placed(r, turn(r, model="claude"), Memory("fast", "primary", NOW - 5))
    assert decision.conversation.stick is Stick.OFF
    assert names(decision)[0] == "claude"


@pytest.mark.parametrize(
    ("memory", "why"),
    [
        (Memory("fast", "retired-model", NOW - 5), "gone from the rules"),
        (Memory("fast", "claude", NOW - 5), "not in its remembered tier any more"),
    ],
)
def test_a_remembered_model_that_is_gone_leaves_the_rules_decision(memory: Memory, why: str) -> None:
    r = rules()
    decision = placed(r, turn(r), memory)
    assert (decision.conversation.stick, decision.conversation.move) == (Stick.MOVED, Move.UNAVAILABLE), why
    assert names(decision) == ["primary", "secondary"]


def test_a_model_too_small_for_the_turn_is_left() -> None:
    doc = three_providers()
    doc["models"]["secondary"]["context_window"] = 100
    r = parse_rules(doc, "test-rules.yaml")
    decision = placed(r, turn(r, "word " * 400), Memory("fast", "secondary", NOW - 5))
    assert (decision.conversation.stick, decision.conversation.move) == (Stick.MOVED, Move.UNAVAILABLE)


@pytest.mark.parametrize(
    ("conversations", "rule_sticky", "expected"),
    [
        ({}, None, Stick.KEPT),
        ({}, False, Stick.OFF),
        ({"sticky": False}, None, Stick.OFF),
        ({"sticky": False}, True, Stick.KEPT),
    ],
)
def test_sticky_per_file_and_per_rule(
    conversations: dict[str, Any], rule_sticky: bool | None, expected: Stick
) -> None:
    doc = three_providers(conversations=conversations)
    if rule_sticky is not None:
        doc["rules"][0]["sticky"] = rule_sticky
    r = parse_rules(doc, "test-rules.yaml")
    decision = placed(r, turn(r, "prove it"), Memory("smart", "secondary", NOW - 5))
    assert decision.conversation.stick is expected


def test_moved_by_tells_failover_escalation_and_pacing() -> None:
    r = rules()
    decision = placed(r, turn(r), Memory("fast", "primary", NOW - 5))
    primary, secondary = decision.candidates
    assert moved_by(decision, primary, escalated=False, downgraded=False) is None
    assert moved_by(decision, secondary, escalated=False, downgraded=False) is Move.FAILOVER
    assert moved_by(decision, secondary, escalated=True, downgraded=False) is Move.ESCALATION
    assert moved_by(decision, primary, escalated=False, downgraded=True) is Move.PACING


def test_memory_is_written_on_a_first_turn_a_move_and_a_refresh_only() -> None:
    first = Memory("fast", "primary", NOW)
    assert should_remember(None, first, 150)
    assert not should_remember(first, Memory("fast", "primary", NOW + 149), 150)
    assert should_remember(first, Memory("fast", "primary", NOW + 150), 150)
    assert should_remember(first, Memory("fast", "secondary", NOW + 1), 150)
    assert should_remember(first, Memory("smart", "primary", NOW + 1), 150)


def test_memory_round_trips_through_a_store_item_and_refuses_garbage() -> None:
    memory = Memory("fast", "primary", NOW + 0.25, 1234, 56, Move.FAILOVER)
    item = memory.as_item()
    assert all(type(v) in (int, str) for v in item.values())  # what every store holds
    assert Memory.from_item(item) == memory
    assert Memory.from_item(None) is None
    assert Memory.from_item({"tier": "fast", "model": 3, "at_ms": 1}) is None
    assert Memory.from_item({"tier": "fast", "model": "m", "at_ms": "1"}) is None
    odd = Memory.from_item({"tier": "fast", "model": "m", "at_ms": 1, "moved_by": "??", "prompt": -4})
    assert odd is not None
    assert (odd.moved_by, odd.prompt_tokens) == (Move.FIRST, 0)


def test_the_refresh_is_half_the_shorter_ttl() -> None:
    assert Policy.of(rules()).refresh_s == 150
    assert Policy.of(rules(conversations={"cache_ttl_s": 0, "ttl_s": 600})).refresh_s == 300
