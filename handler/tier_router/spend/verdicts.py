"""What the budget guard answers: a reservation, a pacing decision, a refusal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tier_router.spend.pricing import usd

Scope = Literal["global", "key"]


@dataclass(frozen=True, slots=True)
class PaceDecision:
    """The tier to use. `reason` is ASCII (header-safe) and set only when downgraded."""

    tier: str | None
    downgraded_from: str | None = None
    reason: str | None = None

    @property
    def downgraded(self) -> bool:
        return self.downgraded_from is not None


@dataclass(frozen=True, slots=True)
class CapReached:
    """The hard cap refused a reservation. Map it to HTTP 429 (see `message`, `retry_after_s`)."""

    scope: Scope
    router_key: str | None
    cap: int
    requested: int
    retry_after_s: int  # until the budget day resets
    fallback_tier: str | None  # `on_cap: tier:<name>`: retry once on this tier, else reject

    @property
    def message(self) -> str:
        who = "this router's" if self.scope == "global" else f"router key {self.router_key!r}'s"
        hours, rest = divmod(self.retry_after_s, 3600)
        return (
            f"The request would exceed {who} daily budget of ${usd(self.cap, 2)} "
            f"(it may cost up to ${usd(self.requested)}). The budget resets in {hours}h{rest // 60:02d}m."
        )


@dataclass(slots=True)
class Reservation:
    """Money held for one request. Pass it back to `settle` exactly once (extra calls are
    no-ops)."""

    day: str
    router_key: str | None
    reserved: int
    items: tuple[str, ...]  # the day item (shard) that may hold it (empty: nothing to settle, or
    # the day's layout was unknown: `uncounted`, settled where it is then)
    expires_at: float  # the budget items' expiry
    hold: str = ""  # the hold field on each item (see the module docstring)
    uncounted: bool = False  # admitted without a full reservation because the store failed
    settled: bool = False
    actual: int | None = None  # what settle charged (reserved when the caller passed None)
