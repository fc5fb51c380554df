"""What the budget guard answers besides a reservation: a pacing decision, a refusal."""

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
