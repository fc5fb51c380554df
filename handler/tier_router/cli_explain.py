"""`tier-router explain`, offline: the conversation a chat body belongs to and the prompt-cache
hints its request would carry.

The router identifies the conversation of a chat turn (`routing.conversation.identify`, scoped
by the router key's name) and places it by what the store remembers (`conversations`). Offline
nothing is read: the body is identified the same way, and the decision shown is the rules' —
what the router does when it cannot read the memory (`Stick.UNREAD`), or `Stick.OFF` where
stickiness does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tier_router.providers.cache_hints import KEY_PREFIX
from tier_router.routing.conversation import Conversation, identify
from tier_router.routing.stickiness import Placement, Policy, Stick

if TYPE_CHECKING:
    from tier_router.routing.engine import Decision, Rules

NOT_READ = "stickiness is not read offline: the rules' decision is shown"


def conversation_of(
    rules: Rules, body: Mapping[str, Any], headers: Mapping[str, str], key: str | None
) -> Conversation | None:
    """The conversation the router would identify for this chat body (None when the rules turn
    conversations off). Raises `APIError` for a malformed explicit id, as the router does."""
    if not Policy.of(rules).active:
        return None
    return identify(body, headers, key or "")


def placed_offline(rules: Rules, decision: Decision, conversation: Conversation | None) -> Decision:
    """`decision` with its conversation's placement, as the router would place it without
    reading the store."""
    if conversation is None:
        return decision
    stick = Stick.UNREAD if Policy.of(rules).applies(rules, decision) else Stick.OFF
    return replace(decision, conversation=Placement(conversation.label, stick))


def as_dict(decision: Decision, conversation: Conversation | None) -> dict[str, Any]:
    """`Decision.as_dict`, with the conversation's id source and the offline note."""
    data = decision.as_dict()
    if conversation is not None and data.get("conversation") is not None:
        data["conversation"] |= {"source": conversation.source, "note": NOT_READ}
    return data


def lines(decision: Decision, conversation: Conversation | None) -> list[str]:
    """The text form's lines for the conversation and the prompt cache."""
    out = []
    if conversation is not None:
        out.append(f"conversation  {conversation.label} (id from {conversation.source}; {NOT_READ})")
    min_tokens = decision.prompt_cache
    cache = "breakpoints off" if min_tokens is None else f"breakpoints from {min_tokens} tokens"
    keyed = [r.name for r in decision.candidates if r.provider.sends_prompt_cache_key]
    if conversation is not None and keyed:
        cache += f"; prompt_cache_key {KEY_PREFIX}{conversation.label} to {', '.join(keyed)}"
        cache += " (unless the request has its own)"
    out.append(f"prompt cache  {cache}")
    return out
