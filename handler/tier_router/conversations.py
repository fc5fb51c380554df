"""Sticky conversations in the store: which model answered a conversation's last turn.

One item per conversation, `conv:<digest>` (the digest of `routing.conversation.identify`: the
tenant and the conversation's id or stable prefix, never prompt text), holding
`stickiness.Memory` and expiring `conversations.ttl_s` after the turn it was written for.

Store operations (why a store item and not a token the client carries: OpenAI SDK clients never
send response headers back, so a carried token would make almost no client sticky):

- read: ONE `get`, only on a turn that has an earlier answer in it (an assistant or tool
  message). A conversation's first turn has nothing to remember yet and reads nothing.
- write: ONE `put` after the answer (`remember`, from the lifecycle's settle, never before the
  first byte): on the first turn, when the conversation moved (failover, escalation, a priced
  move, pacing, a client naming another tier), and when the stored turn is `refresh_s` old.
  Other turns write nothing.

A store that fails or is slow (the store's deadline) costs stickiness, never the request: the
rules decide (`Stick.UNREAD`), logged once per outage; a failed write is logged the same way and
the next turn decides afresh.
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
    """The tier and first model the rules alone gave this turn."""


def has_earlier_turn(body: Mapping[str, Any]) -> bool:
    """Whether the request carries an answer of an earlier turn (so a memory may exist)."""
    messages = body.get("messages")
    if messages.__class__ is not list:
        return False
    for message in messages:  # type: ignore[union-attr]
        if isinstance(message, Mapping) and message.get("role") in EARLIER_TURN_ROLES:
            return True
    return False


class Conversations:
    """One per process: places each chat turn by its conversation, remembers where it went."""

    def __init__(self, store: Store, rules: Rules, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.rules = rules
        self.policy = Policy.of(rules)
        self.clock = clock
        self._outage = Outage(logger, "conversations", "deciding each turn by the rules")
        self._recent: OrderedDict[bytes, Memory] = OrderedDict()
        """This process's last turns (bounded, least recently used out first): see `note`."""

    @property
    def active(self) -> bool:
        return self.policy.active

    def key(self, conversation: Conversation) -> str:
        return KEY_PREFIX + conversation.digest.hex()

    async def place(
        self, decision: Decision, body: Mapping[str, Any], headers: Mapping[str, str], scope: str | None
    ) -> tuple[Decision, Turn | None]:
        """`decision` placed by its conversation's memory (`stickiness.follow`), and the turn to
        `remember` after the answer. Raises `APIError` (400) for a malformed explicit id."""
        if not self.policy.active:
            return decision, None
        conversation = identify(body, headers, scope or "")
        stored, read = None, False
        if self.policy.applies(self.rules, decision) and has_earlier_turn(body):
            read = True
            try:
                stored = Memory.from_item(await self.store.get(self.key(conversation)))
                self._outage.ok()
            except StoreError as exc:
                self._outage.failed("read", exc)
                unread = Placement(conversation.label, Stick.UNREAD)
                return replace(decision, conversation=unread), Turn(conversation, None, None, read=False)
        memory, inferred = stored, False
        if read:  # this process's own last turn, when newer: its write may still be in flight
            recent = self._recent.get(conversation.digest)
            if recent is not None and (stored is None or recent.at > stored.at):
                memory = recent
            if memory is None:  # a first turn answered as its rules said writes nothing: re-decide it
                memory = self._first_turn(body, headers, scope)
                inferred = memory is not None
        now = self.clock()
        placed = follow(self.rules, self.policy, decision, conversation.label, memory, now, inferred=inferred)
        ruled = decision.candidates[0].name if decision.candidates else None
        return placed, Turn(conversation, memory, stored, read, (decision.tier, ruled))

    def _first_turn(
        self, body: Mapping[str, Any], headers: Mapping[str, str], scope: str | None
    ) -> Memory | None:
        """The conversation's first turn as the rules decide it (the request's messages up to
        the first answer): where it went unless something moved it, and a move is written."""
        messages = body["messages"]
        cut = next(
            i
            for i, m in enumerate(messages)
            if isinstance(m, Mapping) and m.get("role") in EARLIER_TURN_ROLES
        )
        if cut == 0:
            return None
        try:
            chat = parse_chat({**body, "messages": messages[:cut]}, text_checked=True, params_checked=True)
            first = self.rules.decide(chat, headers, scope)
        except (RouterError, ValueError, TypeError):  # a body that is only valid with its later turns
            return None
        if not first.candidates:
            return None
        return Memory(first.tier or "", first.candidates[0].name, 0.0)  # time unknown: priced cold

    def note(self, exchange: Exchange) -> None:
        """As soon as the request ends, before anything is awaited: this process's next turn of
        the conversation sees where this one went, even before `remember`'s write lands (a
        client running a tool loop sends its next turn within a millisecond of the answer)."""
        new = self._next_memory(exchange)
        if new is not None and exchange.turn is not None:
            self._keep(exchange.turn.conversation.digest, new)

    async def remember(self, exchange: Exchange) -> None:
        """After the answer (the lifecycle's settle): write the conversation's memory when it is
        new, moved or `refresh_s` old. Never raises."""
        turn = exchange.turn
        new = self._next_memory(exchange)
        if turn is None or new is None:
            return
        self._keep(turn.conversation.digest, new)  # now with the stream's final usage
        old = turn.memory
        if new.moved_by is not Move.FIRST and (old is None or old.model != new.model):
            placement = exchange.decision.conversation  # type: ignore[union-attr]
            line = exchange.line
            line.conversation = {**(line.conversation or placement.as_dict()), "moved_by": new.moved_by.value}  # type: ignore[union-attr]
        if not turn.read and (new.tier, new.model) == turn.ruled:
            return  # a first turn where its rules sent it: the next turn re-decides it (`_first_turn`)
        if not should_remember(turn.stored, new, self.policy.refresh_s):
            return
        try:
            await self.store.put(
                self.key(turn.conversation), new.as_item(), expires_at=new.at + self.policy.ttl_s
            )
            self._outage.ok()
        except StoreError as exc:
            self._outage.failed("write", exc)

    def _next_memory(self, exchange: Exchange) -> Memory | None:
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
        usage = exchange.usage if isinstance(exchange.usage, dict) else {}
        return Memory(
            decision.tier or "",
            route.name,
            self.clock(),
            _tokens(usage.get("prompt_tokens")),
            _tokens(usage.get("completion_tokens")),
            move,
        )

    def _keep(self, digest: bytes, memory: Memory) -> None:
        recent = self._recent
        recent[digest] = memory
        recent.move_to_end(digest)
        if len(recent) > RECENT_MAX:
            recent.popitem(last=False)


def _tokens(value: object) -> int:
    return value if type(value) is int and value > 0 else 0
