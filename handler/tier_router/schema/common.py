"""The building blocks every section of the rules file shares: strictness, names, money."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tier_router.schema.units import NAME_PATTERN, PRIORITIES, Priority, usd_to_micro

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=f"^{NAME_PATTERN}$")]
KeyId = Annotated[str, Field(min_length=1, max_length=256)]
"""A router key's name (what the keys file calls it)."""
MAX_USD = 1_000_000
"""$1M a day: far above any real cap, and its micro-dollars (1e12) stay exact integers in
every store (SQLite int64, DynamoDB numbers, float-free arithmetic)."""
Usd = Annotated[float, Field(ge=0, le=MAX_USD, allow_inf_nan=False)]

# Upper bounds of the other numeric settings. Every number a rules file can hold is bounded,
# so a typo (`1e308`) fails at load naming the field, instead of overflowing at request time
# (`asyncio.timeout(1e308)` and `time + 1e308` raise OverflowError; huge ints poison the
# integer micro-dollar and token arithmetic the stores keep).
MAX_TIMEOUT_S = 3600.0
"""An hour: no single provider attempt legitimately takes longer (Lambda stops at 15 min)."""
MAX_WINDOW_S = 86400.0
"""A day: breaker windows, recovery times; longer is a configuration mistake, and the store
expiries computed from them must stay representable."""
MAX_PRICE_PER_MTOK = 10_000.0
"""USD per 1M tokens: ~20x the most expensive model listed today; keeps worst-case costs of
a max-size request far below the int64 micro-dollar range."""
MAX_TOKENS = 100_000_000
"""Tokens (context windows, output limits, condition ranges): 50x today's largest context."""
MAX_PER_MINUTE = 1_000_000_000
"""Requests or tokens per minute: beyond any real traffic; the counters stay small ints."""

Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]
"""A timeout: positive, at most MAX_TIMEOUT_S."""
WindowSeconds = Annotated[float, Field(gt=0, le=MAX_WINDOW_S)]
"""A breaker window or recovery period: positive, at most a day."""
PricePerMTok = Annotated[float, Field(ge=0, le=MAX_PRICE_PER_MTOK)]
"""USD per 1M tokens."""


__all__ = ["NAME_PATTERN", "PRIORITIES", "Priority", "Strict", "usd_to_micro"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a hand-edited file must fail at load, not silently
    disable what it meant to configure. No float may be NaN or infinite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
