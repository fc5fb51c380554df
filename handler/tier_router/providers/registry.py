"""Provider kind → adapter. Adapters are stateless and built once."""

from __future__ import annotations

from tier_router.providers.anthropic_adapter import AnthropicAdapter
from tier_router.providers.base import Adapter
from tier_router.providers.openai_compat import OpenAICompatAdapter

ADAPTERS: dict[str, Adapter] = {
    "openai": OpenAICompatAdapter(),
    "mock": OpenAICompatAdapter(),  # served in-process by providers.mock.MockTransport
    "anthropic": AnthropicAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    return ADAPTERS[kind]
