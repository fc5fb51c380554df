"""The `conversations:` section: sticky conversations and cache-aware moves (docs/conversations.md).

Sticky by default: a conversation's later turns go to the model that answered its last turn
(`routing.stickiness`). A rule opts out with its own `sticky: false` (its requests follow the
rule every turn); `sticky: false` here turns it off for the whole file, and a rule's
`sticky: true` then opts that rule back in.
"""

from __future__ import annotations

from pydantic import Field

from tier_router.schema.common import Strict

DAY_S = 86_400


class ConversationsConfig(Strict):
    sticky: bool = Field(
        default=True, description="keep a conversation on the model that answered its last turn"
    )
    cache_aware: bool = Field(
        default=True,
        description="when a rule picks another tier, move only if that is cheaper than staying on the warm"
        " model (cached-input price on the prefix)",
    )
    ttl_s: int = Field(
        default=3600,
        ge=60,
        le=7 * DAY_S,
        description="how long a conversation's model is remembered after its last remembered turn",
    )
    cache_ttl_s: int = Field(
        default=300,
        ge=0,
        le=DAY_S,
        description="how long a provider keeps a prompt prefix warm after a turn (Anthropic, OpenAI: 5 min)",
    )
