"""Automatic prompt-cache breakpoints for an Anthropic Messages body (docs/prompt-cache.md).

`mark(body, min_tokens)` adds ``cache_control: {"type": "ephemeral"}`` to the stable prefix of
a body `providers.anthropic.build_request` made, in place, in this order while breakpoints
remain:

1. the last tool definition (caches every tool),
2. the last system block (caches tools + system),
3. the last block of the last earlier turn (every message but the final one: caches the whole
   history, which the next turn of the conversation repeats),
4. the last block of the longest other earlier turns, longest first.

Anthropic allows at most `MAX_BREAKPOINTS` (4) per request, counting the client's own
``cache_control`` markers: those are kept and count against the limit, so a body that already
has 4 is left alone. A breakpoint is placed only where the prefix up to and including its
block is estimated at `min_tokens` or more (a shorter prefix is not cached by Anthropic and a
write would cost 1.25x for nothing). The estimate is the router's routing estimate
(`routing.tokens.estimate_tokens`, chars/4 for ASCII) of each block's compact JSON.

Nothing else changes: removing the markers gives back the body as built, except a system
prompt given as a string, which becomes the equivalent single text block to carry a marker.
"""

from __future__ import annotations

import json
from typing import Any

from tier_router.routing.tokens import estimate_tokens

MAX_BREAKPOINTS = 4
"""Anthropic's limit on `cache_control` blocks per request."""

EPHEMERAL = {"type": "ephemeral"}


def mark(body: dict[str, Any], min_tokens: int) -> int:
    """Mark `body`'s stable prefix in place; returns the number of breakpoints added."""
    tools = body.get("tools") or []
    system = body.get("system")
    if isinstance(system, str):
        system_blocks = [{"type": "text", "text": system}] if system else []
    else:
        system_blocks = system or []
    messages = body.get("messages") or []
    present = sum(_marked(b) for b in (*tools, *system_blocks)) + sum(
        _marked(b) for m in messages for b in _content(m)
    )
    budget = MAX_BREAKPOINTS - present
    if budget <= 0:
        return 0

    tools_tokens = sum(_tokens(t) for t in tools)
    system_tokens = sum(_tokens(b) for b in system_blocks)
    chosen: list[dict[str, Any]] = []
    if tools and tools_tokens >= min_tokens and not _marked(tools[-1]):
        chosen.append(tools[-1])
    if system_blocks and tools_tokens + system_tokens >= min_tokens and not _marked(system_blocks[-1]):
        if isinstance(system, str):
            body["system"] = system_blocks
        chosen.append(system_blocks[-1])

    earlier = messages[:-1]
    prefix = tools_tokens + system_tokens
    ends: list[tuple[int, int, int]] = []  # (turn tokens, prefix tokens through it, index)
    for i, message in enumerate(earlier):
        turn = sum(_tokens(b) for b in _content(message))
        prefix += turn
        ends.append((turn, prefix, i))
    order = ends[-1:] + sorted(ends[:-1], key=lambda e: (-e[0], -e[2]))
    for _turn, through, i in order:
        blocks = _content(earlier[i])
        if through >= min_tokens and blocks and not _marked(blocks[-1]):
            chosen.append(blocks[-1])

    for block in chosen[:budget]:
        block["cache_control"] = dict(EPHEMERAL)
    return min(len(chosen), budget)


def _content(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def _marked(block: Any) -> bool:
    return isinstance(block, dict) and "cache_control" in block


def _tokens(block: Any) -> int:
    return estimate_tokens(json.dumps(block, separators=(",", ":"), ensure_ascii=False))
