"""What a replayed request costs: its tokens, and their price on one model.

Tokens: the logged usage when present (re-priced as is: the same prompt and completion
counts on a different model is an approximation — tokenizers differ by ±10-30%); otherwise
prompt tokens are the rules' own estimate (`Features.conversation_tokens`) and completion
tokens are `DEFAULT_COMPLETION_TOKENS` (300), or the request's `max_tokens` if smaller.

Cost: a routed request is priced at the FIRST model of its chain (what serves when every
model is healthy); the baseline prices the same tokens at one model (`--baseline`, default:
the dearest model of the rules file). Both in integer micro-dollars, rounded up per request
exactly like `spend.pricing.cost_micro_usd` (cache discounts in a logged usage included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tier_router.routing.engine import Rules
from tier_router.schema import Price
from tier_router.spend.pricing import SCALE, Rates, cost_micro_usd, rates_of

DEFAULT_COMPLETION_TOKENS = 300
"""Completion tokens assumed for a request whose log has no usage (capped by its max_tokens)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """One model's price, ready for integer math (`rates` is None if a price has > 12 decimals)."""

    price: Price
    rates: Rates | None

    @classmethod
    def of(cls, price: Price) -> Rate:
        return cls(price, rates_of(price))

    def cost(self, prompt: int, completion: int, usage: Mapping[str, Any] | None) -> int:
        """Micro-dollars, rounded up; equal to `cost_micro_usd(price, usage)`."""
        if usage is None and self.rates is not None:
            return self.rates.plain_cost(prompt, completion)
        if usage is None:
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return cost_micro_usd(self.price, usage)

    def cached_cost(self, prompt: int, completion: int, cached: int) -> int:
        """Micro-dollars, rounded up, with `cached` of the prompt tokens read from the cache;
        equal to `cost_micro_usd` of that usage (`prompt_tokens_details.cached_tokens`)."""
        if self.rates is not None:
            r = self.rates
            return -(
                -((prompt - cached) * r.input + cached * r.cached_input + completion * r.output) // SCALE
            )
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        return cost_micro_usd(self.price, usage)


def token_count(value: Any) -> int | None:
    """A logged token count: a non-negative int, else None."""
    return value if type(value) is int and value >= 0 else None


def usage_tokens(usage: Any) -> tuple[int, int, Mapping[str, Any] | None] | None:
    """(prompt, completion, usage-for-pricing) from a logged usage; None when it has no counts.

    The third item is None when plain integer math is exact (no cache details), else the
    usage itself, priced by `cost_micro_usd`."""
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens"))
    if prompt is not None and completion is not None:
        details = usage.get("prompt_tokens_details")
        if isinstance(details, Mapping) and any(details.values()):
            return prompt, completion, usage
        return prompt, completion, None
    total = token_count(usage.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    if completion is None:
        completion = max((total or 0) - (prompt or 0), 0)
    if prompt is None:
        prompt = max((total or 0) - completion, 0)
    return prompt, completion, usage


def estimated_completion(max_tokens: int | None) -> int:
    return min(max_tokens, DEFAULT_COMPLETION_TOKENS) if max_tokens else DEFAULT_COMPLETION_TOKENS


def default_baseline(rules: Rules) -> str:
    """The dearest model: highest output price, then input price, then name."""
    return max(rules.routes.values(), key=lambda r: (r.price.output, r.price.input, r.name)).name
