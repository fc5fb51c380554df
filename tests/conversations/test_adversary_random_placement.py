"""Adversary: a deployment with weighted splits or rollouts and no sticky id (auth off, no
`user`, no sticky header) places each request AT RANDOM. A first turn answered where its rules
sent it is not written: the next turn re-decides it (`Conversations._first_turn`). Re-deciding a
random placement draws again, so in another process (Lambda's containers, a restarted server, an
evicted LRU entry) half the conversations switched model at their second turn: the prompt cache
thrown away and the user seeing another model, which is what stickiness exists to prevent."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.routing.loader import parse_rules
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import assistant, one_turn, user
from tests.support.rules import three_providers
from tests.support.stores import Counting

pytestmark = pytest.mark.anyio
CONVERSATIONS = 24
"""Under the bug each conversation switched with probability 1/2: all 24 keeping their model
by chance is a 1-in-16-million event."""


def weighted() -> Any:
    doc = three_providers()
    doc["tiers"]["fast"] = [{"model": "primary", "weight": 50}, {"model": "secondary", "weight": 50}]
    return parse_rules(doc, "test-rules.yaml")


def rolled_out() -> Any:
    doc = three_providers()
    trial = {"name": "trial", "tier": "smart", "rollout": "50%", "when": {"message_count": {"min": 1}}}
    doc["rules"] = [trial]
    return parse_rules(doc, "test-rules.yaml")


WEIGHTED = weighted()


@pytest.mark.parametrize("rules", [WEIGHTED, rolled_out()], ids=["weighted-split", "rollout"])
async def test_a_randomly_placed_conversation_keeps_its_model_in_another_process(rules: Any) -> None:
    store = Counting(MemoryStore())
    switched = []
    for i in range(CONVERSATIONS):
        messages = [user(f"Classify ticket {i}, please.")]
        first, exchange = await one_turn(store, rules, {"model": "auto", "messages": messages})
        assert first.sticky == "none"  # placed at random: no sticky id
        answered = exchange.route.name  # type: ignore[union-attr]
        messages += [assistant("Category: billing."), user("Why?")]
        second, _ = await one_turn(store, rules, {"model": "auto", "messages": messages})  # new process
        if second.conversation.remembered != answered:  # the memory is the first turn's model,
            switched.append(i)  # not a second draw
        elif rules is WEIGHTED and second.candidates[0].name != answered:
            switched.append(i)  # same tier: kept on it (a rollout's second draw may be priced away)
    assert switched == []
    assert store.calls["get"] == CONVERSATIONS  # one read per later turn, as ever


async def test_a_non_random_first_turn_still_writes_nothing() -> None:
    """The fix writes a first turn only when its placement cannot be re-decided: with a sticky
    id (here the router key), single-turn traffic still reads and writes nothing."""
    store = Counting(MemoryStore())
    for i in range(5):
        decision, _ = await one_turn(
            store, WEIGHTED, {"model": "auto", "messages": [user(f"Ticket {i}")]}, scope="team-a"
        )
        assert decision.sticky == "key"
    assert (store.calls["get"], store.writes) == (0, 0)
