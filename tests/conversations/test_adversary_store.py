"""Adversary: stores that half work, and items that are not what the router wrote.

A store that answers reads but refuses writes (a read-only SQLite file, an IAM role without
PutItem) must be logged once per outage, as a store that is down is: not a WARNING and an INFO
on every turn, the read's success announcing "reachable again" between two failed writes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from tier_router.conversations import Conversations
from tier_router.routing.loader import parse_rules
from tier_router.routing.stickiness import Stick
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import assistant, one_turn, placed, user
from tests.support.clock import FakeClock
from tests.support.rules import three_providers
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio
RULES = parse_rules(three_providers(), "test-rules.yaml")


class ReadOnly(Wrapped):
    """Reads work; every write fails."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.writable = False

    async def before(self, name: str) -> None:
        if name in ("put", "add", "put_if", "delete") and not self.writable:
            raise StoreUnavailable("AccessDenied: not authorized to perform dynamodb:PutItem")


def second_turn(i: int) -> dict[str, Any]:
    return {"model": "auto", "messages": [user(f"Ticket {i}"), assistant("Noted."), user("Status?")]}


async def test_a_store_that_reads_but_cannot_write_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    store = ReadOnly(MemoryStore())
    process = Conversations(store, RULES)
    with caplog.at_level(logging.INFO, logger="tier_router.conversations"):
        for i in range(5):  # each a failover on a later turn: a write every time, each failing
            await one_turn(store, RULES, second_turn(i), serve=1, conversations=process)
    records = [r for r in caplog.records if r.name == "tier_router.conversations"]
    assert [r.levelno for r in records] == [logging.WARNING], [r.getMessage() for r in records]
    assert "write" in records[0].getMessage()
    store.writable = True
    with caplog.at_level(logging.INFO, logger="tier_router.conversations"):
        await one_turn(store, RULES, second_turn(9), serve=1, conversations=process)
    assert "reachable again" in caplog.records[-1].getMessage()  # the recovery, once


@pytest.mark.parametrize(
    "item",
    [
        {"tier": "fast", "model": "primary", "at_ms": 10**18},  # from the far future
        {"tier": "fast", "model": "primary", "at_ms": -5},
        {"tier": "fast", "model": "secondary", "at_ms": 1, "prompt": 2**62, "completion": -1},
        {"tier": "smart", "model": "primary", "at_ms": 1},  # a model outside its tier
        {"tier": "gone", "model": "gone", "at_ms": 1, "moved_by": "teleport"},
        {"tier": 5, "model": "primary", "at_ms": "1"},
    ],
)
async def test_a_hostile_item_never_breaks_a_turn(
    store: Store, clock: FakeClock, item: dict[str, Any]
) -> None:
    """Whatever sits under `conv:` (another version's item, a hand edit), the turn is placed on
    a model of the rules' own tier, and the next turn's memory is the answer's."""
    conversations = Conversations(store, RULES, clock=clock)
    request = second_turn(0)
    _, exchange = await placed(conversations, request)
    await store.put(conversations.key(exchange.turn.conversation), item)  # type: ignore[union-attr]
    decision, _ = await one_turn(store, RULES, request, clock=clock)
    assert decision.tier == "fast"
    assert {r.name for r in decision.candidates} == {"primary", "secondary"}
    assert decision.conversation.stick in (Stick.KEPT, Stick.MOVED)
    clock.advance(1)
    after, _ = await one_turn(store, RULES, request, serve=1, clock=clock)
    clock.advance(1)
    final, _ = await one_turn(store, RULES, request, clock=clock)
    assert final.candidates[0].name == after.candidates[1].name  # the failover was remembered
