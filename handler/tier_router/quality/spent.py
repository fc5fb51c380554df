"""What one judgement spent: its calls' costs and tokens, and what judging's budget was charged."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tier_router.stream_state import add_usage


@dataclass(slots=True)
class Spent:
    """What one judgement's calls cost so far (µ$; None: a call came without usage)."""

    reference: int | None = 0
    judge: int | None = 0
    tokens: dict[str, Any] = field(default_factory=lambda: {"reference": None, "judge": None})
    charged: int | None = None
    """What judging's budget was charged once settled: the total, or, when a call's cost is
    unknown (no usage), the reservation in full."""

    @property
    def cost(self) -> int:
        """What `judge_cost` counts: what the budget was charged (so the report's judging cost
        and `judge:<day>` agree, also for providers that report no usage)."""
        known = self.total
        return known if known is not None else self.charged or 0

    @property
    def total(self) -> int | None:
        return None if self.reference is None or self.judge is None else self.reference + self.judge

    def cut(self) -> None:
        """Cancelled with a call in flight: what it is billed is unknown (the total is None,
        so the reservations are charged in full, as for a provider that reports no usage)."""
        if self.tokens["reference"] is None:
            self.reference = None
        self.judge = None

    def add_judge(self, cost: int | None, usage: dict[str, Any] | None) -> None:
        self.judge = None if cost is None or self.judge is None else self.judge + cost
        if usage:
            self.tokens["judge"] = add_usage(self.tokens["judge"], usage)
