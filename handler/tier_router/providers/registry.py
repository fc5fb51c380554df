"""Provider kind → adapter. Adapters are stateless and built once.

`ADAPTERS` speak chat completions; `EMBEDDINGS` speak embeddings — a provider kind absent
from it has no embeddings API, and the loader refuses an embedding model on it. Adding an
embedding provider: one adapter module (`providers.base.Adapter`: `build`, `parse`,
`error_message`) and one line here.
"""

from __future__ import annotations

from tier_router.providers.anthropic_adapter import AnthropicAdapter
from tier_router.providers.base import Adapter
from tier_router.providers.openai_compat import OpenAICompatAdapter
from tier_router.providers.openai_embeddings import OpenAIEmbeddingsAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAICompatAdapter(),
    "mock": OpenAICompatAdapter(),  # served in-process by providers.mock.MockTransport
    "anthropic": AnthropicAdapter(),
}

EMBEDDINGS: dict[str, Adapter] = {
    "openai": OpenAIEmbeddingsAdapter(),
    "mock": OpenAIEmbeddingsAdapter(),  # served in-process by providers.mock.MockTransport
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]


def embeddings_adapter_for(kind: str) -> Adapter:
    return EMBEDDINGS[kind]
