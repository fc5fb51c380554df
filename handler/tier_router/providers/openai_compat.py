"""`openai` kind: any OpenAI-compatible endpoint (OpenAI, DeepSeek, Gemini's OpenAI API,
Groq, vLLM, Ollama, ...).

The client's body passes through with only `model` replaced, so fields this router does
not know still reach the provider. For streams the router always asks for usage
(`stream_options.include_usage`) so streamed requests can be priced; the usage-only chunk
is dropped again if the client did not ask for it. One field may be added: `prompt_cache_key`
from the conversation (`CacheHints.key`, for providers that take it) when the client sent none.
"""

from __future__ import annotations

import json
from typing import Any

from tier_router.providers.base import (
    UpstreamProtocolError,
    UpstreamRequest,
    check_bad_chunks,
    dumps,
    load_json_object,
    loads,
)
from tier_router.providers.cache_hints import KEYED, NO_HINTS, CacheHints
from tier_router.routing.engine import ModelRoute

DONE = "[DONE]"


class OpenAICompatAdapter:
    kind = "openai"
    passthrough = True

    def build(
        self, route: ModelRoute, body: dict[str, Any], api_key: str | None, hints: CacheHints = NO_HINTS
    ) -> UpstreamRequest:
        upstream = {**body, "model": route.model_id}
        if upstream.get("stream"):
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        cache = None
        if hints.key is not None and body.get("prompt_cache_key") is None:  # the client's own wins
            upstream["prompt_cache_key"] = hints.key
            cache = KEYED
        return UpstreamRequest(
            endpoint(route.provider.base_url, "/chat/completions"),
            json_headers(route, api_key),
            dumps(upstream),
            cache,
        )

    def parse(self, content: bytes) -> dict[str, Any]:
        data = load_json_object(content, "the provider's response")
        if not isinstance(data.get("choices"), list):
            raise UpstreamProtocolError("the provider's response has no 'choices' list")
        return data

    def decoder(self, include_usage: bool) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(include_usage)

    def error_message(self, status: int, content: bytes) -> str:
        return openai_error_message(status, content)


class OpenAIStreamDecoder:
    __slots__ = ("bad_chunks", "finished", "include_usage", "usage")
    passthrough = True  # each chunk is the event's JSON, unchanged

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.finished = False
        self.usage: dict[str, Any] | None = None
        self.bad_chunks = 0

    def feed(self, event: str, data: str) -> list[dict[str, Any]]:
        if data == DONE:
            self.finished = True
            return []
        try:
            chunk = loads(data)
        except ValueError:  # an isolated bad chunk is skipped; a few more and the stream failed
            self.bad_chunks += 1
            check_bad_chunks(self.bad_chunks)
            return []
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("the provider sent a stream chunk that is not a JSON object")
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            raise UpstreamProtocolError(f"the provider reported an error mid-stream: {error.get('message')}")
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            if not chunk.get("choices") and not self.include_usage:
                return []
        return [chunk]


def json_headers(route: ModelRoute, api_key: str | None) -> dict[str, str]:
    """An OpenAI-compatible request's headers: JSON, the provider's own, its key as a bearer."""
    headers = {"content-type": "application/json", **route.provider.headers}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def endpoint(base_url: str, path: str) -> str:
    """Append a path to a base URL, keeping its query (e.g. Azure's `?api-version=`)."""
    base, sep, query = base_url.partition("?")
    return f"{base.rstrip('/')}{path}{sep}{query}"


def openai_error_message(status: int, content: bytes) -> str:
    """The provider's own error message, if its body says one (`error.message`, a string
    `error`, or vLLM's top-level `message`), else the status."""
    try:
        data = json.loads(content)
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        if message is None and isinstance(data, dict):
            message = data.get("message")
        if isinstance(message, str) and message:
            return message[:500]
    except (ValueError, UnicodeDecodeError):
        pass
    return f"HTTP {status}"
