"""TEMPORARY re-export: moved to `tier_router.breakers`; delete at integration."""

from tier_router.breakers import AlwaysHealthy, BreakerHealth, BreakerPlan, Health, Level, Plan

__all__ = ["AlwaysHealthy", "BreakerHealth", "BreakerPlan", "Health", "Level", "Plan"]
