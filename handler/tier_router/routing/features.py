"""What the decision engine measures about one request.

Features are computed once per request in a single pass over the messages; conditions only
read them. Texts are kept (regex conditions need them) but never exported: `as_dict()` is
what explain output, logs and headers may show.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tier_router.routing.request import Chat
from tier_router.routing.tokens import IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS, estimate_tokens

IMAGE_PART_TYPES = frozenset({"image_url", "input_image", "image"})
SYSTEM_ROLES = frozenset({"system", "developer"})
JSON_FORMATS = frozenset({"json_object", "json_schema"})


@dataclass(slots=True, repr=False)
class Features:
    """Read-only by convention (built once per request; a frozen dataclass costs ~9x more
    to build, and this is built on every request). Its repr shows the measurements only:
    never texts, headers, metadata or the user (a Decision's repr holds it)."""

    last_user_text: str
    system_text: str
    all_text: str
    last_user_chars: int
    last_user_tokens: int
    conversation_chars: int
    conversation_tokens: int
    message_count: int
    has_tools: bool
    json_response: bool
    has_images: bool
    image_count: int
    max_tokens: int | None
    headers: Mapping[str, str]
    metadata: Mapping[str, str]
    user: str | None

    def __repr__(self) -> str:
        return f"Features({self.as_dict()!r})"

    def as_dict(self) -> dict[str, Any]:
        """Numbers and flags only: safe to log and to return to clients."""
        return {
            "last_user_chars": self.last_user_chars,
            "last_user_tokens": self.last_user_tokens,
            "conversation_chars": self.conversation_chars,
            "conversation_tokens": self.conversation_tokens,
            "message_count": self.message_count,
            "has_tools": self.has_tools,
            "json_response": self.json_response,
            "has_images": self.has_images,
            "image_count": self.image_count,
            "max_tokens": self.max_tokens,
        }


def message_text(message: dict[str, Any]) -> tuple[str, int]:
    """The text of a (validated) message and how many image parts it carries."""
    content = message.get("content")
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    images = 0
    for part in content:
        text = part.get("text")
        if text is not None:
            texts.append(text)
        elif part["type"] in IMAGE_PART_TYPES:
            images += 1
    return "\n".join(texts), images


def measure(request: Chat, headers: Mapping[str, str]) -> Features:
    """Compute every feature in one pass. `headers` must have lower-case names."""
    system_parts: list[str] = []
    all_parts: list[str] = []
    last_user = ""
    chars = 0
    tokens = 0
    images = 0
    for message in request.messages:
        text, message_images = message_text(message)
        images += message_images
        chars += len(text)
        tokens += estimate_tokens(text) + MESSAGE_OVERHEAD_TOKENS
        calls = message.get("tool_calls")
        if calls:  # billed input too: a long tool-call history is mostly arguments
            tokens += estimate_tokens(json.dumps(calls, separators=(",", ":")))
        all_parts.append(text)
        role = message["role"]
        if role == "user":
            last_user = text
        elif role in SYSTEM_ROLES:
            system_parts.append(text)
    tools = request.tools or request.functions
    if tools:
        tokens += estimate_tokens(json.dumps(tools, separators=(",", ":")))
    tokens += images * IMAGE_TOKENS
    response_format = request.response_format or {}
    if response_format.get("type") == "json_schema":  # the schema reaches the prompt
        tokens += estimate_tokens(json.dumps(response_format, separators=(",", ":")))
    return Features(  # positional, in field order: cheaper than keywords on the hot path
        last_user,
        "\n".join(system_parts),
        "\n".join(all_parts),
        len(last_user),
        estimate_tokens(last_user),
        chars,
        tokens,
        len(request.messages),
        bool(tools),
        response_format.get("type") in JSON_FORMATS,
        images > 0,
        images,
        request.max_completion_tokens or request.max_tokens,
        headers,
        request.metadata or {},
        request.user,
    )


def measure_input(
    texts: list[str],
    chars: int,
    tokens: int,
    headers: Mapping[str, str],
    metadata: Mapping[str, str],
    user: str | None,
) -> Features:
    """The features of an embeddings request: its whole input is the "conversation" and the
    "last user message" (length and text conditions read it), in one message; no system
    prompt, tools, response format, images or output limit."""
    text = "\n".join(texts)
    return Features(
        text, "", text, chars, tokens, chars, tokens, 1, False, False, False, 0, None, headers, metadata, user
    )
