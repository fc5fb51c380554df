"""Circuit breakers: one per provider and one per model, shared through the state store.

board   BreakerBoard: every breaker's state in the store (closed / open / half-open),
        read through a per-process snapshot; the probe lease
plan    the per-request view the forwarder uses: Health.plan(candidates) -> Plan
        (next / success / failure / release); BreakerHealth, and AlwaysHealthy (none)
"""

from tier_router.breakers.board import (
    CLOSED,
    BreakerBoard,
    BreakerConfig,
    BreakerView,
    State,
    last_failure,
    least_recently_failed,
)
from tier_router.breakers.plan import (
    AlwaysHealthy,
    BreakerHealth,
    BreakerPlan,
    Health,
    Level,
    Plan,
    model_key,
    probe_lease_s,
    provider_breaker,
    provider_key,
)

__all__ = [
    "CLOSED",
    "AlwaysHealthy",
    "BreakerBoard",
    "BreakerConfig",
    "BreakerHealth",
    "BreakerPlan",
    "BreakerView",
    "Health",
    "Level",
    "Plan",
    "State",
    "last_failure",
    "least_recently_failed",
    "model_key",
    "probe_lease_s",
    "provider_breaker",
    "provider_key",
]
