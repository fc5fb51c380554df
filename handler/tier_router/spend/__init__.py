"""Spend control: what requests cost, what was spent today, and the limits on both.

Modules, one job each, all money in integer micro-dollars (1 USD = 1,000,000 µ$):

- `pricing`   — usage × price → µ$ (exact decimals, rounded up once); worst-case estimate.
- `counters`  — the budget day, and `SpendLedger`: today's spend by tier/model/rule/key.
- `budget`    — `BudgetGuard`: pacing (downgrade while ahead of pace) and a hard daily
                cap (atomic reservations, settled with the actual cost).
- `ratelimit` — `RateLimiter`: requests and tokens per minute per router key.
- `cache`     — `ResponseCache`: exact-match cache for deterministic completions.
- `config`    — the rules-file sections `budgets:`, `limits:`, `cache:`.

Per request, in this order (each step is skipped when its section is not configured):

    limiter.check(key, tokens)            → Limited: 429 + its headers (no spend)
    guard.pace(tier, priority, key)       → maybe a cheaper tier (re-resolve the chain)
    cache.get(cache_key(...))             → hit: serve it, ledger.record(cost=0, cache_hit)
    guard.reserve(key, guard.estimate())  → CapReached: retry on `fallback_tier` or 429
    try: forward   finally: guard.settle(reservation, cost_micro_usd(route.price, usage))
    ledger.record(...); cache.put(...) if should_store(completion)

Every component fails open on store errors (logged once per outage), except the budget
guard with `on_store_error: reject`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Re-exports resolved lazily: `spend.config` is imported by the rules schema, and `spend.budget`
# imports the schema back, so eager imports here would be a cycle.
_EXPORTS = {
    "BudgetGuard": "budget",
    "CapReached": "budget",
    "PaceDecision": "budget",
    "Reservation": "budget",
    "ResponseCache": "cache",
    "cache_key": "cache",
    "header_opt_in": "cache",
    "is_cacheable": "cache",
    "should_store": "cache",
    "BudgetConfig": "config",
    "CacheConfig": "config",
    "CacheOverride": "config",
    "CachePolicy": "config",
    "KeyRateLimit": "config",
    "PacingConfig": "config",
    "RateLimitConfig": "config",
    "SpendLedger": "counters",
    "SpendReport": "counters",
    "day_key": "counters",
    "cost_micro_usd": "pricing",
    "usd": "pricing",
    "worst_case_micro_usd": "pricing",
    "Allowed": "ratelimit",
    "Limited": "ratelimit",
    "RateLimiter": "ratelimit",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
