"""Conversation identity: which conversation a chat request belongs to (issue 19).

An explicit id wins when the client sends one, read in this order:

1. the `x-conversation-id` header: set outside the body (by the client's gateway, a proxy or
   the app's HTTP layer), it is the most deliberate statement and never reaches the provider;
2. `metadata.conversation_id`: the client's own label for this conversation, in the body;
3. `prompt_cache_key`: OpenAI's cache hint. It often groups *more* than one conversation (OpenAI
   suggests one key per user or per prompt template), so it is the weakest explicit signal.

An empty string is absent (the next source is read); a present value that is not a string, or
is longer than `MAX_ID_CHARS`, is refused with OpenAI's 400 naming the parameter.

Without an explicit id, the id is a digest of the conversation's stable prefix: the system /
developer messages before the first user message, the tool (or function) definitions, the
first user message, and the request's `user` when it is a string (two users who open with the
same words are two conversations). Every later turn repeats that prefix, so a first turn and its
fifth turn get the same id; a client that trims the oldest messages, or changes its tools
between turns, starts a new one (send an explicit id to avoid that). Canonical form: JSON
objects by sorted key (key order is not content), a string content equals one text part, every
string is length-prefixed (no two different inputs feed the same bytes). JSON whitespace is gone
once the body is parsed; whitespace *inside* a string is content.

Bounded work: each string is hashed up to `HASHED_CHARS` characters plus its full length (a
1 MB system prompt, or an image's base64 data, costs one 64 K-character hash, once per request).
Two prompts that share their first 64 K characters and their length get the same id; they
share the provider's cached prefix too, which is what the id is for.

The id is blake2b-128 (personalised, like `routing.sticky`'s digests) of the scope (the
tenant, so two tenants never share a conversation) and the source; only the digest is kept.
Neither the raw id nor any prompt text is stored, returned or shown: `Conversation`'s repr and
`label` show the source and a 16-hex-digit prefix of the digest only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from hashlib import blake2b
from typing import Any, Final, NamedTuple

from tier_router.errors import APIError
from tier_router.param_errors import invalid_type, length

HEADER: Final = "x-conversation-id"
"""The header an explicit id is read from (lower-case, as `Features.headers` holds names)."""
METADATA_KEY: Final = "conversation_id"
MAX_ID_CHARS: Final = 512
"""An explicit id longer than this is refused (as long as a `metadata` value may be)."""
HASHED_CHARS: Final = 64 * 1024
"""Each string of the prefix is hashed up to this many characters (plus its full length)."""
SYSTEM_ROLES: Final = frozenset({"system", "developer"})
PERSON: Final = b"tr-conversation1"
"""blake2b's personalisation (16 bytes): these digests never equal another purpose's."""

SOURCES: Final = ("header", "metadata", "prompt_cache_key", "prefix")
CANONICAL: Final = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
"""Tools' canonical JSON: sorted keys, no whitespace (built once, not per request)."""


class Conversation(NamedTuple):
    source: str
    """Where the id came from: "header", "metadata", "prompt_cache_key" or "prefix"."""
    digest: bytes
    """blake2b-128 of the scope and the id (or prefix); never the id itself."""

    @property
    def label(self) -> str:
        """A short, loggable name for the conversation: 16 hex digits of the digest."""
        return self.digest[:8].hex()

    @property
    def explicit(self) -> bool:
        return self.source != "prefix"

    def __repr__(self) -> str:
        return f"Conversation(source={self.source!r}, label={self.label!r})"


def identify(body: Mapping[str, Any], headers: Mapping[str, str], scope: str = "") -> Conversation:
    """The conversation `body` belongs to. `headers` must have lower-case names; `scope` is the
    tenant (or router key name): ids are only equal within one scope. Raises `APIError` (400)
    for an explicit id of the wrong type or length."""
    header = explicit(headers.get(HEADER), HEADER)
    if header is not None:
        return _explicit("header", header, scope)
    metadata = body.get("metadata")
    if isinstance(metadata, Mapping):
        labelled = explicit(metadata.get(METADATA_KEY), f"metadata.{METADATA_KEY}")
        if labelled is not None:
            return _explicit("metadata", labelled, scope)
    key = explicit(body.get("prompt_cache_key"), "prompt_cache_key")
    if key is not None:
        return _explicit("prompt_cache_key", key, scope)
    return Conversation("prefix", prefix_digest(body, scope))


def explicit(value: object, param: str) -> str | None:
    """A present explicit id, checked; None when absent or empty."""
    if value is None:
        return None
    if value.__class__ is not str:
        raise invalid_type(param, "a string", value)
    if len(value) > MAX_ID_CHARS:  # type: ignore[arg-type]
        raise _too_long(param, len(value))  # type: ignore[arg-type]
    return value or None  # type: ignore[return-value]


def _too_long(param: str, size: int) -> APIError:
    return length(param, "string", MAX_ID_CHARS, size)


def _explicit(source: str, value: str, scope: str) -> Conversation:
    out: list[str] = []
    _feed_str(out, scope)
    _feed_str(out, source)
    _feed_str(out, value)
    return Conversation(source, _digest(out))


def prefix_digest(body: Mapping[str, Any], scope: str = "") -> bytes:
    """blake2b-128 of the stable prefix (see the module doc), in canonical form."""
    out: list[str] = []
    _feed_str(out, scope)
    _feed_str(out, "prefix")
    user = body.get("user")
    _feed_str(out, user if user.__class__ is str else "")
    tools = body.get("tools") or body.get("functions")
    if tools:  # C-speed canonical JSON (sorted keys, no whitespace), then capped like any string
        out.append("T")
        _feed_str(out, CANONICAL.encode(tools))
    messages = body.get("messages")
    if messages.__class__ is list:
        for message in messages:  # type: ignore[union-attr]
            if not isinstance(message, Mapping):
                continue
            role = message.get("role")
            if role == "user":
                out.append("U")
                _feed_message(out, message)
                break
            if role in SYSTEM_ROLES:
                out.append("S")
                _feed_message(out, message)
            # Anything else before the first user message (rare: an assistant greeting) is
            # part of every turn's prefix as well, but not what names the conversation.
    return _digest(out)


def _digest(out: list[str]) -> bytes:
    """One encode, one hash: every piece is already capped and length-prefixed."""
    return blake2b("".join(out).encode("utf-8", "surrogatepass"), digest_size=16, person=PERSON).digest()


def _feed_message(out: list[str], message: Mapping[str, Any]) -> None:
    name = message.get("name")
    _feed_str(out, name if name.__class__ is str else "")
    content = message.get("content")
    if content.__class__ is str:  # the same as one text part
        out.append("[t")
        _feed_str(out, content)  # type: ignore[arg-type]
    elif content.__class__ is list:
        out.append("[")
        for part in content:  # type: ignore[union-attr]
            if isinstance(part, Mapping) and part.get("type") == "text" and part.get("text").__class__ is str:
                out.append("t")
                _feed_str(out, part["text"])
            else:  # an image, a file, audio: by its data (url / base64), capped like any string
                _feed(out, part)
    else:
        _feed(out, content)


def _feed(out: list[str], value: Any) -> None:
    """Canonical, unambiguous text for a JSON value: type tag, length prefix, sorted keys."""
    kind = value.__class__
    if kind is str:
        out.append("s")
        _feed_str(out, value)
    elif kind is dict or isinstance(value, Mapping):
        out.append(f"{{{len(value)}:")
        for key in sorted(value):
            _feed_str(out, str(key))
            _feed(out, value[key])
    elif kind is list or kind is tuple:
        out.append(f"[{len(value)}:")
        for item in value:
            _feed(out, item)
    else:  # numbers, booleans, null: JSON's own spelling
        out.append("n")
        _feed_str(out, json.dumps(value))


def _feed_str(out: list[str], text: str) -> None:
    """`<length>:` then the text up to HASHED_CHARS: the length tells where the piece ends."""
    out.append(f"{len(text)}:")
    out.append(text[:HASHED_CHARS])
