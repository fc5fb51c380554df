"""Sticky conversations: later turns go to the model that answered the conversation's last turn.

Pure functions on a `Decision` (no store, no clock): `follow` takes the rules' decision for this
turn and what the conversation remembers (`Memory`, read by `tier_router.conversations`) and
returns the decision to forward, with a `Placement` saying what stickiness did. The router and
`replay` call the same code, so a replay's model switches are the router's.

What `follow` does, in order:

1. The request named a model, the conversation has no memory yet, or stickiness is off for the
   rule (`sticky: false`) or for the file (`conversations.sticky: false`): the rules' decision
   stands (`Stick.NEW` / `Stick.OFF`).
2. The remembered model is gone from the rules, or its context window cannot hold this turn:
   the rules' decision stands (`Stick.MOVED`, by `Move.UNAVAILABLE`).
3. Same tier as remembered: the remembered model goes first in the tier's chain (`Stick.KEPT`),
   the rest of the chain stays behind it as the fallback. A failover that moved the
   conversation is therefore kept: the model that answered is the one remembered.
4. Another tier: a request that NAMED the other tier moves (the client asked: `Move.CLIENT`).
   A conversation an escalation moved up stays up (its cheaper tier already failed validation:
   no price can send it back). A conversation that budget pacing moved is re-decided (pacing
   is a day's state, not the conversation's). Otherwise, with `conversations.cache_aware` (the
   default), the move is priced (`price_move`): staying pays the cached-input price on the warm
   prefix, moving pays the full input price on a cold model; the cheaper wins, a tie stays.
   Without it, the conversation always stays on its model. Staying moves the turn to the
   remembered tier, unless the rules' own chain holds the remembered model: then it goes first
   there, and the rules' chain stays its fallback.

Warm: the provider still holds the prefix when the last turn the memory records is at most
`cache_ttl_s` old. `Memory.at` is refreshed at most every half `cache_ttl_s`
(`should_remember`), so it is never later than the real last turn: a warm verdict is always
right, a cold one may be pessimistic (it then under-states what staying saves).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tier_router.routing.engine import DecisionKind
from tier_router.routing.routes import needed_tokens
from tier_router.spend.pricing import cost_micro_usd

if TYPE_CHECKING:
    from tier_router.routing.engine import Decision, ModelRoute, Rules


class Stick(StrEnum):
    """What stickiness did to a turn's decision."""

    NEW = "new"
    """Nothing remembered yet (a first turn, or the memory expired): the rules decided."""
    KEPT = "kept"
    """The remembered model goes first."""
    MOVED = "moved"
    """The conversation leaves its remembered model (`Placement.move` says why)."""
    OFF = "off"
    """Not sticky: the rule has `sticky: false`, the file turned it off, or the request named a model."""
    UNREAD = "unread"
    """The memory could not be read (the store failed or was slow): the rules decided."""


class Move(StrEnum):
    """Why a conversation changed model (remembered with it, and on the log line)."""

    FIRST = "first"
    """Its first remembered turn."""
    RULE = "rule"
    """A rule picked another tier and moving there was priced cheaper than staying."""
    CLIENT = "client"
    """The request named another tier."""
    UNAVAILABLE = "unavailable"
    """The remembered model left the rules, or cannot hold this turn."""
    FAILOVER = "failover"
    """The remembered (or decided) model failed and a fallback answered."""
    ESCALATION = "escalation"
    """A cascade's validators failed the answer and a higher tier answered."""
    PACING = "pacing"
    """Budget pacing (or the cap's fallback tier) moved the request to a cheaper tier."""


@dataclass(frozen=True, slots=True)
class Memory:
    """What the store keeps per conversation (no prompt text): the last answer's tier and model."""

    tier: str
    model: str
    at: float
    """Unix seconds of the last turn this memory was written for."""
    prompt_tokens: int = 0
    """That turn's prompt tokens (the provider's count): the prefix a warm cache holds."""
    completion_tokens: int = 0
    """That turn's answer length: the output estimate when a move is priced."""
    moved_by: Move = Move.FIRST

    def as_item(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "model": self.model,
            "at_ms": int(self.at * 1000),  # a store holds ints and strings
            "prompt": self.prompt_tokens,
            "completion": self.completion_tokens,
            "moved_by": self.moved_by.value,
        }

    @classmethod
    def answered(cls, tier: str, model: str, at: float, usage: object, moved_by: Move) -> Memory:
        """The memory of a turn `model` answered with `usage` (OpenAI's shape; anything else: no tokens)."""
        if not isinstance(usage, dict):
            usage = {}
        return cls(
            tier,
            model,
            at,
            _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")),
            moved_by,
        )

    @classmethod
    def from_item(cls, item: dict[str, Any] | None) -> Memory | None:
        """The stored item back, or None when it is absent or not one of ours (never raises)."""
        if not isinstance(item, dict):
            return None
        tier, model, at_ms = item.get("tier"), item.get("model"), item.get("at_ms")
        if not (isinstance(tier, str) and isinstance(model, str) and type(at_ms) is int):
            return None
        try:
            moved_by = Move(item.get("moved_by", "first"))
        except ValueError:
            moved_by = Move.FIRST
        return cls(
            tier, model, at_ms / 1000, _count(item.get("prompt")), _count(item.get("completion")), moved_by
        )


def _count(value: object) -> int:
    return value if type(value) is int and value > 0 else 0


@dataclass(frozen=True, slots=True)
class Estimate:
    """A priced move, in micro-dollars for this turn (see `price_move`)."""

    stay: int
    move: int
    warm: bool
    prefix_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "stay_micro_usd": self.stay,
            "move_micro_usd": self.move,
            "warm": self.warm,
            "prefix_tokens": self.prefix_tokens,
        }


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a turn's conversation was placed: on the decision (explain, the log line)."""

    label: str
    """The conversation's short name (`routing.conversation.Conversation.label`)."""
    stick: Stick
    move: Move | None = None
    remembered: str | None = None
    """The remembered model, when there was one."""
    estimate: Estimate | None = None
    """The priced choice, when the rules picked another tier."""
    inferred: bool = False
    """The memory is the conversation's first turn re-decided by the rules (a first turn that
    went where its rules said is not written: single-turn traffic writes nothing)."""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"conversation": self.label, "stick": self.stick.value}
        if self.move is not None:
            data["move"] = self.move.value
        if self.remembered is not None:
            data["remembered"] = self.remembered
        if self.estimate is not None:
            data["estimate"] = self.estimate.as_dict()
        if self.inferred:
            data["inferred"] = True
        return data


@dataclass(frozen=True, slots=True)
class Policy:
    """The `conversations:` section and the rules' own `sticky:` values, read once per rules file."""

    sticky: bool = True
    cache_aware: bool = True
    ttl_s: float = 3600.0
    cache_ttl_s: float = 300.0
    rules_off: frozenset[str] = frozenset()
    """Rules with `sticky: false`."""
    rules_on: frozenset[str] = frozenset()
    """Rules with `sticky: true` (they opt in when the file turns stickiness off)."""

    @classmethod
    def of(cls, rules: Rules) -> Policy:
        section = rules.spec.conversations
        own = [(rule.name, rule.sticky) for rule in rules.spec.rules]
        return cls(
            section.sticky,
            section.cache_aware,
            float(section.ttl_s),
            float(section.cache_ttl_s),
            frozenset(name for name, sticky in own if sticky is False),
            frozenset(name for name, sticky in own if sticky is True),
        )

    @property
    def active(self) -> bool:
        """Whether any request can be sticky (else conversations are not even identified)."""
        return self.sticky or bool(self.rules_on)

    @property
    def refresh_s(self) -> float:
        """A remembered turn is rewritten once it is this old (`should_remember`): half the
        shorter of the memory's TTL and the cache's, so `at` stays usable for both."""
        return max(min(self.ttl_s, self.cache_ttl_s or self.ttl_s) / 2, 1.0)

    def for_rule(self, rule: str | None) -> bool:
        if rule is not None and rule in self.rules_off:
            return False
        if rule is not None and rule in self.rules_on:
            return True
        return self.sticky

    def applies(self, rules: Rules, decision: Decision) -> bool:
        """Whether this decision's conversation may be kept on its model."""
        if decision.kind is DecisionKind.EXPLICIT:
            target = rules.targets.get(decision.requested_model)
            if target is None or target.kind == "model" or decision.tier is None:
                return False  # the client chose the model
        return self.for_rule(decision.rule_name)


def follow(
    rules: Rules,
    policy: Policy,
    decision: Decision,
    label: str,
    memory: Memory | None,
    now: float,
    *,
    inferred: bool = False,
) -> Decision:
    """The decision to forward for this turn (see the module doc); `decision.conversation` says
    what stickiness did."""
    if not policy.applies(rules, decision):
        return replace(decision, conversation=Placement(label, Stick.OFF))
    if memory is None:
        return replace(decision, conversation=Placement(label, Stick.NEW))
    remembered = rules.routes.get(memory.model)
    chain = rules.tiers.get(memory.tier, ())
    if remembered is None or remembered not in chain or not _fits(remembered, decision):
        placed = Placement(label, Stick.MOVED, Move.UNAVAILABLE, memory.model, None, inferred)
        return replace(decision, conversation=placed)
    if memory.tier == decision.tier:
        kept = Placement(label, Stick.KEPT, None, memory.model, None, inferred)
        return replace(decision, candidates=_first(remembered, decision.candidates), conversation=kept)
    if decision.kind is DecisionKind.EXPLICIT or not rules.same_kind(memory.tier, decision.tier):
        return replace(
            decision, conversation=Placement(label, Stick.MOVED, Move.CLIENT, memory.model, None, inferred)
        )
    if memory.moved_by is Move.PACING:
        return replace(
            decision, conversation=Placement(label, Stick.MOVED, Move.PACING, memory.model, None, inferred)
        )
    estimate = None
    if policy.cache_aware and memory.moved_by is not Move.ESCALATION and decision.candidates:
        estimate = price_move(remembered, decision.candidates[0], memory, decision, now, policy.cache_ttl_s)
        if estimate.move < estimate.stay:
            placed = Placement(label, Stick.MOVED, Move.RULE, memory.model, estimate, inferred)
            return replace(decision, conversation=placed)
    if remembered in decision.candidates and memory.moved_by is not Move.ESCALATION:
        # The rules' own chain holds the model: kept on it there, with the rules' fallback (the
        # remembered tier's chain may lack one: a tier the client once named, of one model).
        stayed = replace(decision, why=f"{decision.why}; then conversation kept on {memory.model}")
        candidates = _first(remembered, stayed.candidates)
    else:  # the remembered tier's chain, then the rules' own as the last resort: a kept turn
        # never has fewer models to fall back on than the rules gave it (a one-model tier)
        why = f"conversation kept on {memory.model} (tier {memory.tier!r})"
        stayed = rules.retier(decision, memory.tier, why)
        kept = _first(remembered, stayed.candidates)
        candidates = (*kept, *(r for r in decision.candidates if r not in kept))
    placed = Placement(label, Stick.KEPT, None, memory.model, estimate, inferred)
    return replace(stayed, candidates=candidates, conversation=placed)


def price_move(
    warm: ModelRoute, cold: ModelRoute, memory: Memory, decision: Decision, now: float, cache_ttl_s: float
) -> Estimate:
    """This turn's expected cost on the remembered model and on the rules' first choice: the
    prompt is the routing estimate (at least the remembered prompt), the answer as long as the
    last one; on the remembered model, while warm, the remembered prompt is a cached read."""
    prompt = max(decision.features.conversation_tokens, memory.prompt_tokens)
    output = memory.completion_tokens
    is_warm = now - memory.at <= cache_ttl_s
    prefix = min(memory.prompt_tokens, prompt) if is_warm else 0
    stay_usage = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "prompt_tokens_details": {"cached_tokens": prefix},
    }
    move_usage = {"prompt_tokens": prompt, "completion_tokens": output}
    return Estimate(
        cost_micro_usd(warm.price, stay_usage), cost_micro_usd(cold.price, move_usage), is_warm, prefix
    )


def moved_by(decision: Decision, served: ModelRoute, escalated: bool, downgraded: bool) -> Move | None:
    """Why the model that answered is not the one the forwarded decision put first (None: it is)."""
    if escalated:
        return Move.ESCALATION
    if downgraded:
        return Move.PACING
    if decision.candidates and served is not decision.candidates[0]:
        return Move.FAILOVER
    placement = decision.conversation
    if placement is not None and placement.stick is Stick.MOVED:
        return placement.move
    return None


def should_remember(old: Memory | None, new: Memory, refresh_s: float) -> bool:
    """Write the memory on a first turn, on a move, and when the stored one is `refresh_s` old
    (so `at` stays within `refresh_s` of the real last turn): not on every turn."""
    if old is None or old.model != new.model or old.tier != new.tier:
        return True
    return new.at - old.at >= refresh_s


def _fits(route: ModelRoute, decision: Decision) -> bool:
    """As `routes.fit_context` keeps a model: its window holds what the request needs."""
    return route.context_window is None or route.context_window >= needed_tokens(decision.features)


def _first(route: ModelRoute, chain: tuple[ModelRoute, ...]) -> tuple[ModelRoute, ...]:
    return (route, *(r for r in chain if r is not route))
