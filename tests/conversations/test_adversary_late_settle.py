"""Adversary: a tool loop sends its next turn the moment an answer arrives, while that answer's
settle (and `Conversations.remember` in it) is still in flight: a busy store, the settle queue
(`lifecycle.SETTLE_CONCURRENCY`), or `background_settle`. A later turn then fails over and is
remembered first; the earlier turn's `remember` lands last. It must not put the conversation
back on the model that failed: the memory is of the newest turn, in this process and in the
store."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.conversations import Conversations
from tier_router.routing.loader import parse_rules
from tier_router.routing.stickiness import Move
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import answered, assistant, one_turn, placed, user
from tests.support.clock import FakeClock
from tests.support.rules import three_providers

pytestmark = pytest.mark.anyio
RULES = parse_rules(three_providers(), "test-rules.yaml")  # fast = [primary, secondary]


def request(turns: int) -> dict[str, Any]:
    messages = [user("List the files, then read the largest.")]
    for i in range(1, turns):
        messages += [assistant(f"tool call {i}"), {"role": "tool", "tool_call_id": f"c{i}", "content": "ok"}]
    return {"model": "auto", "messages": messages}


async def test_a_settle_that_lands_after_a_newer_turn_does_not_undo_its_failover() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    process = Conversations(store, RULES, clock=clock)
    await one_turn(store, RULES, request(1), conversations=process)
    clock.advance(1)
    _, slow = await placed(process, request(2))
    answered(slow)  # primary answered turn 2 ...
    process.note(slow)  # ... the lifecycle noted it; its settle is still queued
    clock.advance(1)
    third, failed_over = await placed(process, request(3))
    assert third.candidates[0].name == "primary"
    answered(failed_over, serve=1)  # primary failed: secondary answered turn 3
    process.note(failed_over)
    await process.remember(failed_over)
    clock.advance(1)
    await process.remember(slow)  # turn 2's settle lands last
    clock.advance(1)
    here, _ = await placed(process, request(4))
    elsewhere, _ = await placed(Conversations(store, RULES, clock=clock), request(4))
    assert here.candidates[0].name == "secondary"
    assert elsewhere.candidates[0].name == "secondary"
    assert here.conversation.remembered == elsewhere.conversation.remembered == "secondary"


async def test_the_memory_is_stamped_when_the_turn_ended_not_when_its_settle_ran() -> None:
    """`at` decides warmth (`cache_ttl_s`): a settle delayed past the cache's TTL must not make
    a cold prefix look warm."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    process = Conversations(store, RULES, clock=clock)
    await one_turn(store, RULES, request(1), conversations=process)
    _, exchange = await placed(process, request(2))
    answered(exchange, serve=1)
    ended = clock()
    process.note(exchange)
    clock.advance(400)  # the store was slow: remember runs 400 s later
    await process.remember(exchange)
    item = await store.get(process.key(exchange.turn.conversation))  # type: ignore[union-attr]
    assert item is not None
    assert item["moved_by"] == Move.FAILOVER.value
    assert item["at_ms"] == int(ended * 1000)


@pytest.mark.parametrize("ends", ["failover-first", "failover-last"])
@pytest.mark.parametrize("settles", ["in-order", "reversed"])
async def test_parallel_turns_leave_the_process_and_the_store_agreeing_on_the_last_answer(
    ends: str, settles: str
) -> None:
    """A tool loop fires two requests of one conversation at once; one fails over, the other
    does not. Whatever order they end and settle in, this process and the store (another
    process) then place the next turn on the model that answered the turn that ended last."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    process = Conversations(store, RULES, clock=clock)
    await one_turn(store, RULES, request(1), conversations=process)
    clock.advance(1)
    _, failover = await placed(process, request(2))
    _, steady = await placed(process, request(2))
    answered(failover, serve=1)
    answered(steady)
    order = [failover, steady] if ends == "failover-first" else [steady, failover]
    for exchange in order:
        process.note(exchange)
        clock.advance(0.01)
    for exchange in order if settles == "in-order" else order[::-1]:
        await process.remember(exchange)
    last = order[-1].route.name  # type: ignore[union-attr]
    here, _ = await placed(process, request(3))
    elsewhere, _ = await placed(Conversations(store, RULES, clock=clock), request(3))
    assert (here.candidates[0].name, elsewhere.candidates[0].name) == (last, last)
