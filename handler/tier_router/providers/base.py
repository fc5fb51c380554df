"""What every provider kind supplies to the forwarder.

A provider adapter knows one wire format: how to build the upstream request from an
OpenAI-style body, how to turn the upstream answer (whole or streamed) back into OpenAI's
shapes, and how to read the upstream's error bodies. It knows nothing of rules, breakers,
budgets or HTTP servers; the forwarder drives it.
"""

from __future__ import annotations

import json
import json.scanner
from dataclasses import dataclass
from typing import Any, Protocol

from tier_router.errors import RequestError, UpstreamError
from tier_router.providers.cache_hints import NO_HINTS, CacheHints, CacheWork
from tier_router.routing.engine import ModelRoute


class UpstreamProtocolError(UpstreamError, ValueError):
    """The provider answered something that is not a valid answer (bad JSON, garbage SSE).

    Treated like an outage of that provider: the next candidate is tried.
    """


MAX_BAD_CHUNKS = 3
"""A stream may carry this many chunks that are not JSON: each is skipped (and counted, see
`StreamDecoder.bad_chunks`); one more and the stream counts as failed."""


def check_bad_chunks(count: int) -> None:
    """After counting one more chunk that is not JSON: UpstreamProtocolError once `count`
    passes MAX_BAD_CHUNKS (call it from the decoder's `except ValueError:`)."""
    if count > MAX_BAD_CHUNKS:
        skipped = f"at most {MAX_BAD_CHUNKS} are skipped"
        raise UpstreamProtocolError(
            f"the provider sent {count} stream chunks that are not JSON ({skipped})"
        ) from None


class ClientRequestError(RequestError, ValueError):
    """The request cannot be expressed for this provider (e.g. a content type it lacks)."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    content: bytes
    cache: CacheWork | None = None
    """What the adapter added for the provider's prompt cache (None: nothing)."""


class StreamDecoder(Protocol):
    """Turns upstream SSE events into OpenAI `chat.completion.chunk` dicts."""

    finished: bool
    """True once the upstream signalled a complete end (`[DONE]` / `message_stop`)."""
    passthrough: bool
    """True when `feed` returns at most one chunk per event, equal to the event's JSON data:
    the proxy then forwards the provider's own text instead of re-encoding the chunk."""
    bad_chunks: int
    """Events skipped because their data was not JSON (at most `MAX_BAD_CHUNKS`)."""

    def feed(self, event: str, data: str) -> list[dict[str, Any]]: ...

    @property
    def usage(self) -> dict[str, Any] | None: ...


class Adapter(Protocol):
    kind: str
    passthrough: bool
    """True when the upstream's JSON body already is an OpenAI chat.completion."""

    def build(
        self, route: ModelRoute, body: dict[str, Any], api_key: str | None, hints: CacheHints = NO_HINTS
    ) -> UpstreamRequest:
        """The provider's request for `body`. `hints` (`providers.cache_hints`): mark the
        prompt's stable prefix from `hints.min_tokens` estimated tokens (providers that need
        markers: `providers.anthropic_cache`), send `hints.key` as `prompt_cache_key` when the
        client sent none (providers that take it); what was added is the request's `cache`."""
        ...

    def parse(self, content: bytes) -> dict[str, Any]: ...

    def decoder(self, include_usage: bool) -> StreamDecoder: ...

    def error_message(self, status: int, content: bytes) -> str: ...


def load_json_object(content: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpstreamProtocolError(f"{what} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{what} is not a JSON object")
    return data


_scan = json.scanner.make_scanner(json.JSONDecoder())


def loads(text: str) -> Any:
    """`json.loads(text)`, the same parser with the same answer and errors, without its
    wrapper's work (a whitespace regex on each side) for text with no space around it: what a
    provider's stream chunk is. Paid per streamed chunk: a quarter less than `json.loads`."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # space before, or not JSON: json.loads says which
        return json.loads(text)
    if end != len(text):  # space after, or more after it
        return json.loads(text)
    return value


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(data: Any) -> bytes:
    """Compact JSON, UTF-8 (`json.dumps(data, separators=(",", ":"), ensure_ascii=False)`,
    with one encoder made once instead of one per call)."""
    return _ENCODER.encode(data).encode()


def is_content_chunk(chunk: dict[str, Any]) -> bool:
    """A chunk that carries what a user would see: text, refusal or a tool call."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
            or delta.get("function_call")
        ):
            return True
    return False


TEXT_FIELDS = ("content", "reasoning_content", "reasoning", "refusal")
"""Delta fields whose text the client is sent: the answer, reasoning (DeepSeek's
`reasoning_content`, OpenRouter's and vLLM's `reasoning`) and a refusal."""


def content_chars(chunk: dict[str, Any]) -> int:
    """Characters of generated output in a chunk: text, reasoning, refusal and tool-call
    arguments — what a stream the client abandoned is priced by. Paid on every streamed chunk,
    so the common one (one choice, a delta that is only text) is read first. Never raises: of a
    malformed chunk (forwarded as is), what can be counted is."""
    try:
        (choice,) = chunk["choices"]
        delta = choice["delta"]
        if len(delta) == 1:
            text = delta["content"]
            if text.__class__ is str:
                return len(text)
    except (LookupError, TypeError, ValueError):
        pass
    chars = 0
    try:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta")
            if not delta:
                continue
            for name in TEXT_FIELDS:
                text = delta.get(name)
                if text.__class__ is str:
                    chars += len(text)
            for call in delta.get("tool_calls") or ():
                arguments = (call.get("function") or {}).get("arguments")
                if arguments.__class__ is str:
                    chars += len(arguments)
            arguments = (delta.get("function_call") or {}).get("arguments")
            if arguments.__class__ is str:
                chars += len(arguments)
    except (AttributeError, TypeError):
        pass
    return chars
