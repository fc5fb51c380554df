"""The `embeddings:` section of the rules file: how `POST /v1/embeddings` with `model: auto`
is routed.

    models:
      embed-small: {provider: openai, id: text-embedding-3-small, kind: embedding, price: {input: 0.02}}
    tiers:
      embed: [embed-small, embed-large]            # a tier holds models of one kind
    embeddings:
      default_tier: embed
      rules:
        - {name: long-input, tier: embed-long, when: {conversation_tokens: {min: 2000}}}

Rules have the chat rules' shape and conditions, measured on the input: `conversation_tokens`
/ `conversation_chars` (and `last_user_*`, the same numbers) count the whole input,
`any_text_matches` / `last_user_matches` read its text, `header`, `metadata` and `user` as in
chat; `rollout` and `arm` gate as in chat. Chat-only conditions (`system_matches`,
`has_tools`, `json_response`, `has_images`, `message_count`, `max_tokens`) and a rule's
`cascade` / `quality` are load errors (`routing.loader`), as is any tier of the wrong kind.
"""

from __future__ import annotations

from pydantic import Field

from tier_router.schema.common import Name, Strict
from tier_router.schema.routing import Rule
from tier_router.schema.units import CHAT_ONLY_CONDITIONS

__all__ = ["CHAT_ONLY_CONDITIONS", "EmbeddingsSection"]


class EmbeddingsSection(Strict):
    default_tier: Name = Field(description="the embedding tier of `model: auto` when no rule matches")
    rules: list[Rule] = Field(default_factory=list, description="first match wins, as in `rules:`")
