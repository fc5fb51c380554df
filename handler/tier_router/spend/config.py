"""TEMPORARY re-export: the `budgets:`, `limits:` and `cache:` sections moved to
`tier_router.schema`. Kept only until `admission.py` imports from there; delete at integration."""

from tier_router.schema import BudgetConfig, CacheConfig, KeyRateLimit, PacingConfig, RateLimitConfig

__all__ = ["BudgetConfig", "CacheConfig", "KeyRateLimit", "PacingConfig", "RateLimitConfig"]
