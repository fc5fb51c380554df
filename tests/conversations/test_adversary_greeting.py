"""Adversary: a chat UI that opens every conversation with an assistant greeting (system,
assistant "Hi! How can I help?", then the user's first question). The greeting is not an answer
to anything: the request is still the conversation's first turn, decided by its rules on the
user's question, and the first turn the memory re-decides later is the one up to the first
answer that FOLLOWS a user message."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.conversations import Conversations
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import Stick
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import assistant, one_turn, placed, user
from tests.support.rules import three_providers
from tests.support.stores import Counting

pytestmark = pytest.mark.anyio
RULES = parse_rules(three_providers(), "test-rules.yaml")  # "prove" -> smart [claude, secondary]
SYSTEM = {"role": "system", "content": "You are the support bot of Example Corp."}
GREETING = assistant("Hi! How can I help you today?")


def opening(question: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [SYSTEM, GREETING, user(question)]}


async def test_a_greeting_before_the_first_question_is_not_an_earlier_turn() -> None:
    store = Counting(MemoryStore())
    request = opening("Prove that the square root of 2 is irrational.")
    assert RULES.decide(parse_chat(request)).tier == "smart"  # the rules, on the question
    decision, _ = await placed(Conversations(store, RULES), request)
    assert decision.conversation.stick is Stick.NEW
    assert (decision.tier, decision.candidates[0].name) == ("smart", "claude")
    assert store.calls["get"] == 0  # a first turn: nothing to read


async def test_the_first_turn_re_decided_later_includes_the_question_after_the_greeting() -> None:
    store = MemoryStore()
    first = opening("Prove that the square root of 2 is irrational.")
    await one_turn(store, RULES, first)  # answered by claude, where its rules sent it: not written
    second = {**first, "messages": [*first["messages"], assistant("Suppose it were p/q..."), user("Thanks!")]}
    decision, _ = await one_turn(store, RULES, second)  # another process: only the store
    assert decision.conversation.inferred
    assert decision.conversation.remembered == "claude"
