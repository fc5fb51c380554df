"""Prompt-cache hints: what the router may add to one upstream request for the provider's prompt
cache, and what it did add (docs/prompt-cache.md).

- `CacheHints` goes into `Adapter.build`: `min_tokens` (Anthropic `cache_control` breakpoints
  from this many estimated prefix tokens, `providers.anthropic_cache.mark`) and `key` (OpenAI's
  `prompt_cache_key`, sent when the client sent none). `hints_for` makes it per candidate from
  the decision and the provider's load-time setting; with nothing to hint it is the shared
  `NO_HINTS` (no allocation).
- `CacheWork` comes back on the `UpstreamRequest` (None: nothing added), rides on the answered
  `fallback.Attempt` and ends as the log line's `prompt_cache` field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

if TYPE_CHECKING:
    from tier_router.routing.engine import Decision, ModelRoute

KEY_PREFIX: Final = "tr-"
"""A key the router set reads `tr-<conversation label>` (16 hex digits: a digest, never an id)."""


@dataclass(frozen=True, slots=True)
class CacheHints:
    """What an adapter may add to the request for the provider's prompt cache."""

    min_tokens: int | None = None
    """Mark the stable prefix from this many estimated tokens (providers that need markers);
    None: no markers."""
    key: str | None = None
    """`prompt_cache_key` for a provider that takes it, when the client sent none; None: none."""


NO_HINTS: Final = CacheHints()


class CacheWork(NamedTuple):
    """What an adapter added to one request: breakpoints and whether it set `prompt_cache_key`."""

    marks: int
    key: bool

    def as_dict(self) -> dict[str, Any]:
        return {"marks": self.marks, "key": self.key}


KEYED: Final = CacheWork(0, True)
_MARKED: Final = tuple(CacheWork(n, False) for n in range(5))


def marked(marks: int) -> CacheWork | None:
    """The work of `marks` breakpoints added (None for none)."""
    if marks <= 0:
        return None
    return _MARKED[marks] if marks < len(_MARKED) else CacheWork(marks, False)


def hints_for(decision: Decision, route: ModelRoute) -> CacheHints:
    """The hints for `route`'s request: the decision's `prompt_cache` setting, and the key of
    its conversation when the route's provider takes one (`Provider.sends_prompt_cache_key`,
    decided at load)."""
    placement = decision.conversation
    if placement is None or not route.provider.sends_prompt_cache_key:
        return NO_HINTS if decision.prompt_cache is None else CacheHints(decision.prompt_cache)
    return CacheHints(decision.prompt_cache, KEY_PREFIX + placement.label)
