"""Adversary: a rule with `sticky: false` is followed every turn and leaves the memory untouched
(docs/conversations.md). When such a rule decided a conversation's FIRST turn, nothing is
remembered; the next turn, decided by a sticky rule, must not be kept where the `sticky: false`
rule sent the first (re-deciding the first turn for a memory, `Conversations._first_turn`, gave
the non-sticky rule's tier as if it were remembered, and a cheap one kept every later turn)."""

from __future__ import annotations

import pytest
from tier_router.routing.loader import parse_rules
from tier_router.routing.stickiness import Stick
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import assistant, one_turn, user
from tests.support.rules import three_providers

pytestmark = pytest.mark.anyio


def rules(sticky: bool) -> object:
    doc = three_providers()
    doc["tiers"]["code"] = ["secondary"]  # the cheapest model, for code only
    rule = {"name": "code", "tier": "code", "sticky": sticky, "when": {"last_user_matches": "(?i)\\bcode\\b"}}
    doc["rules"] = [rule]
    return parse_rules(doc, "test-rules.yaml")


async def test_a_first_turn_decided_by_a_non_sticky_rule_is_not_the_conversations_memory() -> None:
    r = rules(sticky=False)
    store = MemoryStore()
    messages = [user("Write code that reverses a list.")]
    first, _ = await one_turn(store, r, {"model": "auto", "messages": messages})  # type: ignore[arg-type]
    assert (first.tier, first.conversation.stick) == ("code", Stick.OFF)
    messages += [assistant("xs[::-1]"), user("Thanks! Now tell me about your day.")]
    second, _ = await one_turn(store, r, {"model": "auto", "messages": messages})  # type: ignore[arg-type]
    assert second.conversation.stick is Stick.NEW
    assert (second.tier, second.candidates[0].name) == ("fast", "primary")


async def test_the_same_first_turn_under_a_sticky_rule_keeps_the_conversation() -> None:
    """The control: were the rule sticky, the first turn is the memory and stays (cheaper)."""
    r = rules(sticky=True)
    store = MemoryStore()
    messages = [user("Write code that reverses a list.")]
    await one_turn(store, r, {"model": "auto", "messages": messages})  # type: ignore[arg-type]
    messages += [assistant("xs[::-1]"), user("Thanks! Now tell me about your day.")]
    second, _ = await one_turn(store, r, {"model": "auto", "messages": messages})  # type: ignore[arg-type]
    assert second.conversation.stick is Stick.KEPT
    assert second.candidates[0].name == "secondary"  # in the rules' tier `fast`, which holds it
