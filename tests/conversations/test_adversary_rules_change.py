"""Adversary: the rules file changes between two turns of a conversation (a deploy): the model
it remembers is removed, moved to another tier, or its tier renamed, or the tier's name now
belongs to an embedding tier. The turn is decided by the new rules (never forwarded to a model
the new rules do not serve there), and the conversation remembers where it went."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.routing.loader import parse_rules
from tier_router.routing.stickiness import Move, Stick
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import assistant, one_turn, user
from tests.support.clock import FakeClock
from tests.support.rules import three_providers


def before() -> dict[str, Any]:
    return three_providers()  # fast = [primary, secondary]


def removed() -> dict[str, Any]:
    doc = before()
    doc["tiers"] = {"fast": ["primary"], "smart": ["claude"], "claude-only": ["claude"]}
    del doc["models"]["secondary"]
    return doc


def moved_to_another_tier() -> dict[str, Any]:
    doc = before()
    doc["tiers"] = {"fast": ["primary"], "smart": ["claude", "secondary"], "claude-only": ["claude"]}
    return doc


def renamed() -> dict[str, Any]:
    doc = before()
    doc["tiers"] = {
        "quick": ["primary", "secondary"],
        "smart": ["claude", "secondary"],
        "claude-only": ["claude"],
    }
    doc["default_tier"] = "quick"
    doc["aliases"] = {"gpt-4o": "quick"}
    return doc


def fast_is_now_embeddings() -> dict[str, Any]:
    doc = renamed()
    doc["models"]["embedder"] = {
        "provider": "openai-a",
        "id": "text-embedding-3-small",
        "kind": "embedding",
        "price": {"input": 0.02},
    }
    doc["tiers"]["fast"] = ["embedder"]
    return doc


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("after", [removed, moved_to_another_tier, renamed, fast_is_now_embeddings])
async def test_a_memory_the_new_rules_do_not_serve_is_left_for_the_rules_decision(after: Any) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    old, new = parse_rules(before(), "old.yaml"), parse_rules(after(), "new.yaml")
    messages = [user("What is a prime?")]
    await one_turn(store, old, {"model": "auto", "messages": messages}, clock=clock)
    messages += [assistant("A number..."), user("Go on.")]
    _, moved = await one_turn(store, old, {"model": "auto", "messages": messages}, serve=1, clock=clock)
    assert moved.route.name == "secondary"  # type: ignore[union-attr]  # remembered: (fast, secondary)
    clock.advance(5)
    messages += [assistant("Primes..."), user("More.")]
    decision, exchange = await one_turn(store, new, {"model": "auto", "messages": messages}, clock=clock)
    assert decision.conversation.stick is Stick.MOVED
    assert decision.conversation.move is Move.UNAVAILABLE
    served = exchange.route.name  # type: ignore[union-attr]
    assert served in [route.name for route in new.tiers[decision.tier]]  # type: ignore[index]
    assert served in new.routes
    clock.advance(5)
    messages += [assistant("..."), user("Thanks.")]
    after_move, _ = await one_turn(store, new, {"model": "auto", "messages": messages}, clock=clock)
    assert after_move.conversation.stick is Stick.KEPT
    assert after_move.conversation.remembered == served
