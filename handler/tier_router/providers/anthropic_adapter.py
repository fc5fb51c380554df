"""`anthropic` kind: the native Messages API, driven through the pure translation functions
in `providers.anthropic`. This module only adds the wire: URL, headers, JSON and error
classification (bad client input → 400; bad upstream data → try the next candidate).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tier_router.providers import anthropic, anthropic_cache
from tier_router.providers.base import (
    ClientRequestError,
    UpstreamProtocolError,
    UpstreamRequest,
    check_bad_chunks,
    dumps,
    load_json_object,
    loads,
)
from tier_router.providers.cache_hints import NO_HINTS, CacheHints, marked
from tier_router.routing.engine import ModelRoute

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires max_tokens; OpenAI clients often omit it. Capped by the model's max_output."""


class AnthropicAdapter:
    kind = "anthropic"
    passthrough = False

    def build(
        self, route: ModelRoute, body: dict[str, Any], api_key: str | None, hints: CacheHints = NO_HINTS
    ) -> UpstreamRequest:
        """`hints.min_tokens`: cache breakpoints (`anthropic_cache.mark`). `hints.key` is not
        sent: the Messages API has no `prompt_cache_key` (a client's is dropped too)."""
        default_max = min(DEFAULT_MAX_TOKENS, route.max_output or DEFAULT_MAX_TOKENS)
        try:
            upstream = anthropic.build_request(body, route.model_id, default_max_tokens=default_max)
        except anthropic.TranslationError as exc:
            raise ClientRequestError(str(exc)) from None
        cache = None
        if hints.min_tokens is not None:
            cache = marked(anthropic_cache.mark(upstream, hints.min_tokens))
        headers = {**anthropic.build_headers(api_key or ""), **route.provider.headers}
        return UpstreamRequest(f"{route.provider.base_url}/v1/messages", headers, dumps(upstream), cache)

    def parse(self, content: bytes) -> dict[str, Any]:
        data = load_json_object(content, "the provider's response")
        try:
            return anthropic.parse_response(data, created=int(time.time()))
        except anthropic.TranslationError as exc:
            raise UpstreamProtocolError(f"unexpected Anthropic response: {exc}") from None

    def decoder(self, include_usage: bool) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(include_usage)

    def error_message(self, status: int, content: bytes) -> str:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            data = None
        return anthropic.translate_error(status, data if isinstance(data, dict) else None)[1][:500]


class AnthropicStreamDecoder:
    __slots__ = ("bad_chunks", "translator")
    passthrough = False  # chunks are translations, encoded by the proxy

    def __init__(self, include_usage: bool) -> None:
        self.translator = anthropic.StreamTranslator(created=int(time.time()), include_usage=include_usage)
        self.bad_chunks = 0

    @property
    def finished(self) -> bool:
        return self.translator.finished

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.translator.usage

    def feed(self, event: str, data: str) -> list[dict[str, Any]]:
        try:
            decoded = loads(data)
        except ValueError:  # an isolated bad event is skipped; a few more and the stream failed
            self.bad_chunks += 1
            check_bad_chunks(self.bad_chunks)
            return []
        try:
            return self.translator.feed(event, decoded)
        except ValueError as exc:  # JSON errors and TranslationError (a ValueError) alike
            raise UpstreamProtocolError(f"bad Anthropic stream event {event!r}: {exc}") from None
