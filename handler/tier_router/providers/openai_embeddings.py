"""`openai` kind, embeddings: `POST {base_url}/embeddings` on any OpenAI-compatible endpoint
(OpenAI, Azure's OpenAI API, vLLM, Ollama, ...).

The client's body passes through with `model` replaced and the router's own routing field
(`metadata`, which OpenAI's embeddings API does not take) removed, so `encoding_format`,
`dimensions`, `user` and fields this router does not know reach the provider as sent. The
answer goes back as is (`passthrough`): a base64 answer stays base64.
"""

from __future__ import annotations

from typing import Any

from tier_router.providers.base import UpstreamProtocolError, UpstreamRequest, dumps, load_json_object
from tier_router.providers.openai_compat import endpoint, openai_error_message
from tier_router.routing.engine import ModelRoute

ROUTER_FIELDS = frozenset({"metadata"})
"""Read by the router's rules (`metadata` conditions), not sent on."""


class OpenAIEmbeddingsAdapter:
    kind = "openai"
    passthrough = True

    def build(self, route: ModelRoute, body: dict[str, Any], api_key: str | None) -> UpstreamRequest:
        upstream = {k: v for k, v in body.items() if k not in ROUTER_FIELDS}
        upstream["model"] = route.model_id
        headers = {"content-type": "application/json", **route.provider.headers}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
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
