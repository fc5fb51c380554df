"""Sticky conversations in the store: which model answered a conversation's last turn.

One item per conversation, `conv:<digest>` (the digest of `routing.conversation.identify`: the
tenant and the conversation's id or stable prefix, never prompt text), holding
`stickiness.Memory` and expiring `conversations.ttl_s` after the turn it was written for.

Store operations (why a store item and not a token the client carries: OpenAI SDK clients never
send response headers back, so a carried token would make almost no client sticky):

- read: ONE `get`, only on a turn that has an earlier answer in it (an assistant or tool
  message after a user message: a greeting before the first question answers nothing). A
  conversation's first turn has nothing to remember yet and reads nothing.
- write: ONE `put` after the answer (`remember`, from the lifecycle's settle, never before the
  first byte): on a first turn that did not go where its rules send it (or was placed at
  random, which re-deciding would not repeat), when the conversation moved (failover,
  escalation, a priced move, pacing, a client naming another tier), and when the stored turn
  is `refresh_s` old. Other turns write nothing, and neither does a settle that lands after a
  newer turn of the conversation ended in this process. The memory's time is when the turn
  ended (`note`), not when its settle ran.

A store that fails or is slow (the store's deadline) costs stickiness, never the request: the
rules decide (`Stick.UNREAD`), logged once per outage; a failed write is logged the same way
(an outage of its own: a store that reads but cannot write is logged once) and the next turn
decides afresh.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from tier_router.errors import RouterError
from tier_router.outage import Outage
from tier_router.request_line import Outcome
from tier_router.routing.conversation import Conversation, identify
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import (
    Memory,
    Move,
    Placement,
    Policy,
    Stick,
    follow,
    moved_by,
    should_remember,
)
from tier_router.routing.sticky import NO_STICKY
from tier_router.store.base import Store, StoreError

if TYPE_CHECKING:
    from tier_router.lifecycle import Exchange
    from tier_router.routing.engine import Decision, Rules

logger = logging.getLogger(__name__)

KEY_PREFIX = "conv:"
RECENT_MAX = 4096
"""This process's last turns kept in memory (~200 bytes each)."""
EARLIER_TURN_ROLES = frozenset({"assistant", "tool", "function"})


@dataclass(slots=True)
class Turn:
    """One request's conversation, from placement to `remember`."""

    conversation: Conversation
    memory: Memory | None
    """What placed this turn: the newer of the store's and this process's last turn."""
    stored: Memory | None
    """What the store held before this turn (None: nothing, not read, or unreadable)."""
    read: bool
    """Whether the memory was read (a later turn of a sticky conversation)."""
    ruled: tuple[str | None, str | None] = (None, None)
    """The tier and first model the rules alone gave this turn, when re-deciding it gives them
    again: (None, None) for a turn placed at random (a split or rollout without a sticky id)."""
    ended: float | None = None
    """When the request ended (`note`): the memory's time, however late `remember` runs."""
    moved: Move | None = None
    """Why this turn's answer moved the conversation (`remember`), for the log line."""


def first_answer(body: Mapping[str, Any]) -> int | None:
    """The index of the first answer in the request (an assistant, tool or function message
    after a user message), or None: then the request is its conversation's first turn, and no
    memory can exist. An assistant greeting before the first user message answers nothing."""
    messages = body.get("messages")
    if messages.__class__ is not list:
        return None
    asked = False
    for i, message in enumerate(messages):  # type: ignore[arg-type]
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        if role == "user":
            asked = True
        elif asked and role in EARLIER_TURN_ROLES:
            return i
    return None


class Conversations:
    """One per process: places each chat turn by its conversation, remembers where it went."""

    def __init__(self, store: Store, rules: Rules, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.rules = rules
        self.policy = Policy.of(rules)
        self.clock = clock
        self._outage = Outage(logger, "conversations", "deciding each turn by the rules")
        self._write_outage = Outage(logger, "conversations", "turns are not remembered")
        """Its own: a store that reads but cannot write is one outage, not one per turn."""
        self._recent: OrderedDict[bytes, Memory] = OrderedDict()
        """This process's last turns (bounded, least recently used out first): see `note`."""

    @property
    def active(self) -> bool:
        return self.policy.active

    def key(self, conversation: Conversation) -> str:
        return KEY_PREFIX + conversation.digest.hex()

    async def place(
        self,
        decision: Decision,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        scope: str | None,
        *,
        restrict: Callable[[Decision], Decision] | None = None,
    ) -> tuple[Decision, Turn | None]:
        """`decision` placed by its conversation's memory (`stickiness.follow`), and the turn to
        `remember` after the answer. `restrict`: what the caller's key does to a decision (its
        allowed tiers), already applied to `decision`; applied to a re-decided first turn too.
        Raises `APIError` (400) for a malformed explicit id."""
        if not self.policy.active:
            return decision, None
        conversation = identify(body, headers, scope or "")
        stored = None
        cut = first_answer(body) if self.policy.applies(self.rules, decision) else None
        read = cut is not None  # a later turn of a sticky conversation: its memory may exist
        if read:
            try:
                stored = Memory.from_item(await self.store.get(self.key(conversation)))
                self._outage.ok()
            except StoreError as exc:
                self._outage.failed("read", exc)
                unread = Placement(conversation.label, Stick.UNREAD)
                return replace(decision, conversation=unread), Turn(conversation, None, None, read=False)
        memory, inferred = stored, False
        now = self.clock()
        if cut is not None:  # this process's own last turn, when newer: its write may still be in flight
            recent = self._recent.get(conversation.digest)
            fresh = recent is not None and now - recent.at < self.policy.ttl_s  # expires as the item does
            if fresh and (stored is None or recent.at > stored.at):  # type: ignore[union-attr]
                memory = recent
            if memory is None:  # a first turn answered as its rules said writes nothing: re-decide it
                memory = self._first_turn(body, cut, headers, scope, restrict)
                inferred = memory is not None
        placed = follow(self.rules, self.policy, decision, conversation.label, memory, now, inferred=inferred)
        ruled = (None, None)  # placed at random (no sticky id): re-deciding it would draw again
        if decision.candidates and decision.sticky != NO_STICKY:
            ruled = (decision.tier, decision.candidates[0].name)
        return placed, Turn(conversation, memory, stored, read, ruled)

    def _first_turn(
        self,
        body: Mapping[str, Any],
        cut: int,
        headers: Mapping[str, str],
        scope: str | None,
        restrict: Callable[[Decision], Decision] | None,
    ) -> Memory | None:
        """The conversation's first turn as the rules decide it (the request's messages up to
        `cut`, the first answer): where it went unless something moved it, and a move is written."""
        try:
            chat = parse_chat(
                {**body, "messages": body["messages"][:cut]}, text_checked=True, params_checked=True
            )
            first = self.rules.decide(chat, headers, scope)
            if restrict is not None:
                first = restrict(first)
        except (RouterError, ValueError, TypeError):  # a body that is only valid with its later turns
            return None
        if not first.candidates or not self.policy.applies(self.rules, first):
            return None  # a first turn that was not sticky (`sticky: false`) left no memory
        return Memory(first.tier or "", first.candidates[0].name, 0.0)  # time unknown: priced cold

    def note(self, exchange: Exchange) -> None:
        """As soon as the request ends, before anything is awaited: this process's next turn of
        the conversation sees where this one went, even before `remember`'s write lands (a
        client running a tool loop sends its next turn within a millisecond of the answer)."""
        turn = exchange.turn
        if turn is None:
            return
        turn.ended = self.clock()
        new = self._next_memory(exchange, turn.ended)
        if new is not None:
            self._keep(turn.conversation.digest, new)

    async def remember(self, exchange: Exchange) -> None:
        """After the answer (the lifecycle's settle): write the conversation's memory when it is
        new, moved or `refresh_s` old. Never raises."""
        turn = exchange.turn
        if turn is None:
            return
        new = self._next_memory(exchange, self.clock() if turn.ended is None else turn.ended)
        if new is None:
            return
        old = turn.memory
        if new.moved_by is not Move.FIRST and (old is None or old.model != new.model):
            turn.moved = new.moved_by  # on the request's line
        latest = self._recent.get(turn.conversation.digest)
        if latest is not None and latest.at > new.at:
            return  # a newer turn of this conversation ended here meanwhile: its memory stands
        self._keep(turn.conversation.digest, new)  # now with the stream's final usage
        if not turn.read and (new.tier, new.model) == turn.ruled:
            return  # a first turn where its rules sent it: the next turn re-decides it (`_first_turn`)
        if not should_remember(turn.stored, new, self.policy.refresh_s):
            return
        try:
            await self.store.put(
                self.key(turn.conversation), new.as_item(), expires_at=new.at + self.policy.ttl_s
            )
            self._write_outage.ok()
        except StoreError as exc:
            self._write_outage.failed("write", exc)

    def _next_memory(self, exchange: Exchange, at: float) -> Memory | None:
        """What the conversation should remember after this request (None: nothing to)."""
        turn, decision, route = exchange.turn, exchange.decision, exchange.route
        if turn is None or decision is None or route is None or exchange.line.outcome is not Outcome.OK:
            return None
        placement = decision.conversation
        if placement is None or placement.stick in (Stick.OFF, Stick.UNREAD):
            return None
        line = exchange.line
        move = moved_by(decision, route, bool(line.escalations), line.downgraded_from is not None)
        old = turn.memory
        if move is None:
            move = old.moved_by if old is not None and old.model == route.name else Move.FIRST
        return Memory.answered(decision.tier or "", route.name, at, exchange.usage, move)

    def _keep(self, digest: bytes, memory: Memory) -> None:
        recent = self._recent
        recent[digest] = memory
        recent.move_to_end(digest)
        if len(recent) > RECENT_MAX:
            recent.popitem(last=False)
