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
write would cost 1.25x for nothing). The estimate is the one routing conditions use
(`routing.features.measure`): `routing.tokens.estimate_tokens` (chars/4 for ASCII) of a text
block's text, `MESSAGE_OVERHEAD_TOKENS` per turn, `IMAGE_TOKENS` per image, and the
estimate of the compact JSON of tool definitions and of other blocks (tool calls, results).

Nothing else changes: removing the markers gives back the body as built, except a system
prompt given as a string, which becomes the equivalent single text block to carry a marker.
"""

from __future__ import annotations

import json
from typing import Any

from tier_router.routing.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS, estimate_tokens

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
    present = sum(_marked(b) for b in (*tools, *system_blocks))
    tools_tokens = sum(_tokens(t) for t in tools)
    prefix = tools_tokens + sum(_tokens(b) for b in system_blocks)
    ends: list[tuple[int, int, int]] = []  # earlier turns: (turn tokens, prefix through it, index)
    for i, message in enumerate(messages):
        turn = MESSAGE_OVERHEAD_TOKENS
        for block in _content(message):
            if "cache_control" in block:
                present += 1
            turn += _tokens(block)
        prefix += turn
        ends.append((turn, prefix, i))
    budget = MAX_BREAKPOINTS - present
    if budget <= 0 or prefix < min_tokens:  # no room, or no prefix long enough to cache
        return 0

    chosen: list[dict[str, Any]] = []
    if tools and tools_tokens >= min_tokens and not _marked(tools[-1]):
        chosen.append(tools[-1])
    system_through = ends[0][1] - ends[0][0] if ends else prefix
    if system_blocks and system_through >= min_tokens and not _marked(system_blocks[-1]):
        if isinstance(system, str):
            body["system"] = system_blocks
        chosen.append(system_blocks[-1])

    earlier = ends[:-1]  # the final message is the new turn: never marked
    for _turn, through, i in earlier[-1:] + sorted(earlier[:-1], key=lambda e: (-e[0], -e[2])):
        blocks = _content(messages[i])
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
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text" and isinstance(block.get("text"), str):
        return estimate_tokens(block["text"])
    if kind == "image":
        return IMAGE_TOKENS
    return estimate_tokens(json.dumps(block, separators=(",", ":"), ensure_ascii=False))
