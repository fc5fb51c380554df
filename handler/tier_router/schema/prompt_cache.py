"""The `prompt_cache:` section: automatic provider prompt-cache breakpoints (docs/prompt-cache.md).

Scoped like `cache:` (the response cache): top-level values, overridden by `tiers.<tier>`,
then by `rules.<rule>`. `tiers:` and `rules:` must name tiers and rules of the file
(`unknown_tiers()` / `unknown_rules()`, reported by the loader).
"""

from __future__ import annotations

from pydantic import Field

from tier_router.schema.common import MAX_TOKENS, Name, Strict
from tier_router.schema.forms import PromptCacheView


class PromptCacheOverride(Strict):
    auto: bool | None = None
    min_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)


class PromptCacheConfig(PromptCacheView, Strict):
    """Off unless `auto: true`. When on, the Anthropic request carries `cache_control` markers
    on the stable prefix (tools, system prompt, earlier turns), at most 4 with the client's."""

    auto: bool = False
    min_tokens: int = Field(
        default=1024,
        ge=1,
        le=MAX_TOKENS,
        description="mark a breakpoint only where the prefix up to it is estimated at this many tokens"
        " or more (Anthropic caches nothing shorter: 1024 for Sonnet/Opus, 2048 for Haiku)",
    )
    tiers: dict[Name, PromptCacheOverride] = Field(default_factory=dict)
    rules: dict[Name, PromptCacheOverride] = Field(default_factory=dict)
