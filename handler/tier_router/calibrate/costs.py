"""Expected cost of one request on a tier, from the rules file's prices.

A tier is priced by its first model (the one that serves while it is healthy):
`prompt tokens × input price + output estimate × output price`. Prompt tokens are the
router's own estimate (`conversation_tokens`, else `last_user_tokens` for labels that
carry only that). Labels do not say how long each tier's answer was, so the output is
estimated as `OUTPUT_TOKENS` per request, or the request's `max_tokens` when that is lower.
"""

from __future__ import annotations

from tier_router.calibrate.data import Examples
from tier_router.routing.engine import Rules

OUTPUT_TOKENS = 300
"""The output estimate per request (tokens), capped by the request's max_tokens."""


def tier_costs(examples: Examples, rules: Rules) -> dict[str, list[float]]:
    """Tier → expected USD per example."""
    prompts = examples.lengths.get("conversation_tokens") or examples.lengths["last_user_tokens"]
    outputs = [OUTPUT_TOKENS if cap is None else min(cap, OUTPUT_TOKENS) for cap in examples.output_caps]
    costs: dict[str, list[float]] = {}
    for tier in examples.tiers:
        price = rules.tiers[tier][0].price
        costs[tier] = [
            (prompt * price.input + output * price.output) / 1e6
            for prompt, output in zip(prompts, outputs, strict=True)
        ]
    return costs


def first_model(rules: Rules, tier: str) -> str:
    return rules.tiers[tier][0].name
