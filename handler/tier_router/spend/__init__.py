"""Spend control: what requests cost, what was spent today, and the limits on both.

Modules, one job each, all money in integer micro-dollars (1 USD = 1,000,000 µ$):

- `pricing`   — usage × price → µ$ (exact decimals, rounded up once); worst-case estimate.
- `counters`  — the budget day, and `SpendLedger`: today's spend and results by
                tier/model/rule/key/arm, one write per request.
- `results`   — what one request counts (`RequestResult.of(line)`): requests, cost,
                latency, errors, escalations, successes per dimension value.
- `budget`    — `BudgetGuard`: pacing (downgrade while ahead of pace) and a hard daily
                cap (atomic reservations, settled with the actual cost).
- `shards`    — the day items: names, shards and each shard's share of a cap, per-key fields.
- `verdicts`  — `PaceDecision`, `CapReached`: what the guard answers besides a reservation.
- `ratelimit` — `RateLimiter`: requests and tokens per minute per router key.
- `cache`     — `ResponseCache`: exact-match cache for deterministic completions.

Per request, in this order (each step is skipped when its section is not configured):

    limiter.check(key, tokens)            → Limited: 429 + its headers (no spend)
    guard.pace(tier, priority, key)       → maybe a cheaper tier (re-resolve the chain)
    cache.get(cache_key(...))             → hit: serve it, ledger.record(cost=0, cache_hit)
    guard.reserve(key, guard.estimate())  → CapReached: retry on `fallback_tier` or 429
    try: forward   finally: guard.settle(reservation, cost, counts=ledger.deltas(...))
    (no reservation: ledger.record_deltas(...)); cache.put(...) if should_store(completion)

The ledger's counters and the budgets share the day items (`shards`: `spend:<day>`, or N
shards with `budgets.shards`), so a reservation is one write and its settle, counters included,
one more.

Every component fails open on store errors (logged once per outage), except the budget
guard with `on_store_error: reject`. Their configuration (`budgets:`, `limits:`, `cache:`)
is part of the rules-file schema, `tier_router.schema`.
"""

from tier_router.spend.budget import BudgetGuard, CapReached, PaceDecision, Reservation
from tier_router.spend.cache import ResponseCache, cache_key, header_opt_in, is_cacheable, should_store
from tier_router.spend.counters import SpendLedger, SpendReport, day_key
from tier_router.spend.pricing import cost_micro_usd, usd, worst_case_micro_usd
from tier_router.spend.ratelimit import Allowed, Limited, RateLimiter

__all__ = [
    "Allowed",
    "BudgetGuard",
    "CapReached",
    "Limited",
    "PaceDecision",
    "RateLimiter",
    "Reservation",
    "ResponseCache",
    "SpendLedger",
    "SpendReport",
    "cache_key",
    "cost_micro_usd",
    "day_key",
    "header_opt_in",
    "is_cacheable",
    "should_store",
    "usd",
    "worst_case_micro_usd",
]
