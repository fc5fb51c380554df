"""`openai` kind, embeddings: `POST {base_url}/embeddings` on any OpenAI-compatible endpoint
(OpenAI, Azure's OpenAI API, vLLM, Ollama, ...).

The client's body passes through with `model` replaced and the router's own routing field
(`metadata`, which OpenAI's embeddings API does not take) removed, so `encoding_format`,
`dimensions`, `user` and fields this router does not know reach the provider as sent. The
answer goes back as is (`passthrough`): a base64 answer stays base64. Before it does,
`check_vectors` holds it to one vector per input: a 200 without them (no data, too few or too
many, non-numbers) is an invalid response, which falls back and counts against the breaker.
"""

from __future__ import annotations

import math
from typing import Any

from tier_router.providers.base import UpstreamProtocolError, UpstreamRequest, dumps, load_json_object
from tier_router.providers.cache_hints import NO_HINTS, CacheHints
from tier_router.providers.openai_compat import endpoint, json_headers, openai_error_message
from tier_router.routing.engine import ModelRoute

ROUTER_FIELDS = frozenset({"metadata"})
"""Read by the router's rules (`metadata` conditions), not sent on."""


class OpenAIEmbeddingsAdapter:
    kind = "openai"
    passthrough = True

    def build(
        self, route: ModelRoute, body: dict[str, Any], api_key: str | None, hints: CacheHints = NO_HINTS
    ) -> UpstreamRequest:
        """Embeddings have no prompt cache: `hints` are not used."""
        upstream = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
        upstream["model"] = route.model_id
        headers = json_headers(route, api_key)
        return UpstreamRequest(endpoint(route.provider.base_url, "/embeddings"), headers, dumps(upstream))

    def parse(self, content: bytes) -> dict[str, Any]:
        data = load_json_object(content, "the provider's response")
        if not isinstance(data.get("data"), list):
            raise UpstreamProtocolError("the provider's embeddings response has no 'data' list")
        return data

    def decoder(self, include_usage: bool) -> Any:
        raise UpstreamProtocolError("embeddings are not streamed")

    def error_message(self, status: int, content: bytes) -> str:
        return openai_error_message(status, content)


def check_vectors(data: dict[str, Any], inputs: int) -> None:
    """Raise UpstreamProtocolError unless `data` (a parsed answer) holds exactly one vector per
    input: `inputs` items, each index once, each vector a non-empty array of finite numbers or
    a non-empty base64 string, all of one length."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != inputs:
        found = len(items) if isinstance(items, list) else "no"
        raise UpstreamProtocolError(
            f"the provider's embeddings response has {found} vectors for {inputs} inputs"
        )
    seen: set[int] = set()
    sizes: set[int] = set()
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if index.__class__ is not int or not 0 <= index < inputs or index in seen:
            raise UpstreamProtocolError(
                f"the provider's embeddings response has a bad index at data[{position}]"
            )
        seen.add(index)
        if not (isinstance(vector, str) and vector) and not (
            isinstance(vector, list) and vector and _finite(vector)
        ):
            raise UpstreamProtocolError(
                f"the provider's embeddings response has no vector at data[{position}]"
            )
        sizes.add(len(vector))
    if len(sizes) > 1:
        raise UpstreamProtocolError("the provider's embeddings response has vectors of different lengths")


def _finite(vector: list[Any]) -> bool:
    """Every element a number and their sum finite (one pass in C: no NaN, no infinity)."""
    try:
        return math.isfinite(sum(vector))
    except TypeError:
        return False
