"""The OpenAI chat-completions request, as far as routing needs to understand it.

`parse_chat` validates a body exactly as the pydantic model `ChatRequest` (in
`routing.request_model`) does, but checks plain bodies directly and leaves the model to
explain, or coerce, the rest. Messages are kept as the client's own dicts: the proxy forwards
the body with only `model` replaced, so unknown fields still reach the provider.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(slots=True)
class Chat:
    """What routing reads of a request, validated. Messages stay the client's own dicts
    (content: a string, a list of part dicts, or None): nothing is copied or rebuilt.
    Built once per request and only read (not frozen: a frozen init costs ~9x more)."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None


def parse_chat(body: dict[str, Any], *, text_checked: bool = False, params_checked: bool = False) -> Chat:
    """Validate a request body as `ChatRequest` does and return what routing reads.

    Why not just `ChatRequest.model_validate`: it runs on every request, and building a
    model object per message and part costs several times more inside a busy server than
    these direct checks. The checks accept a strict subset of what the model accepts (exact
    types, no coercion); anything else goes through the model, which either explains what
    is wrong (`pydantic.ValidationError`) or coerces it (`"max_tokens": "5"`), so both paths
    accept and reject exactly the same bodies.

    `text_checked`: the caller already knows every string in `body` is valid Unicode (no
    lone surrogates — the proxy checks the raw bytes); otherwise the body is checked here.
    `params_checked`: the body passed `tier_router.params.check` (OpenAI's types and ranges),
    which implies every direct check made here (a property test holds it to that): they are
    skipped, and the body is read as it is.
    """
    if (
        body.__class__ is not dict
        or not (text_checked or encodable(body))
        or not (params_checked or _plainly_valid(body))
    ):
        from tier_router.routing.request_model import ChatRequest

        body = ChatRequest.model_validate(body).model_dump()
    return Chat(
        body["model"],
        body["messages"],
        body.get("tools"),
        body.get("functions"),
        body.get("response_format"),
        body.get("max_tokens"),
        body.get("max_completion_tokens"),
        body.get("metadata"),
        body.get("user"),
    )


MAY_HOLD_SURROGATES = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
"""In raw JSON bytes: a surrogate escape, or a UTF-8-encoded surrogate (which `json.loads(bytes)`
lets through). JSON without either cannot hold a lone surrogate: the cheap test before `encodable`."""


def encodable(body: Any) -> bool:
    """False if any string (or key) holds a lone surrogate: valid as a JSON escape, not as text."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError; the
        return False  # others mean "not JSON data at all", which the model will explain
    return True


def _optional(value: Any, kind: type) -> bool:
    return value is None or value.__class__ is kind


def _positive_int(value: Any) -> bool:
    return value is None or (value.__class__ is int and value >= 1)


def _list_of(value: Any, kind: type) -> bool:
    return value is None or (value.__class__ is list and all(item.__class__ is kind for item in value))


def _plainly_valid(body: dict[str, Any]) -> bool:
    """True when `body` (free of lone surrogates) is valid as `ChatRequest` with every field
    already of its exact type."""
    model = body.get("model")
    messages = body.get("messages")
    if model.__class__ is not str or not model or messages.__class__ is not list or not messages:
        return False
    for message in messages:
        if message.__class__ is not dict:
            return False
        role = message.get("role")
        if role.__class__ is not str or role not in ROLES:
            return False
        content = message.get("content")
        if content is None or content.__class__ is str:
            continue
        if content.__class__ is not list:
            return False
        for part in content:
            if part.__class__ is not dict or part.get("type").__class__ is not str:
                return False
            text = part.get("text")
            if text is not None and text.__class__ is not str:
                return False
    get = body.get
    metadata = get("metadata")
    return (
        _optional(get("stream"), bool)
        and _optional(get("stream_options"), dict)
        and _list_of(get("modalities"), str)
        and _list_of(get("tools"), dict)
        and _list_of(get("functions"), dict)
        and _optional(get("response_format"), dict)
        and _positive_int(get("max_tokens"))
        and _positive_int(get("max_completion_tokens"))
        and (metadata is None or (metadata.__class__ is dict and _all_str(metadata.values())))
        and _optional(get("user"), str)
    )


def _all_str(values: Any) -> bool:
    return all(value.__class__ is str for value in values)
