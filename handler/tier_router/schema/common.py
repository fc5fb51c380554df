"""The building blocks every section of the rules file shares: strictness, names, money."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*"
"""Providers, models, tiers, aliases and rules are named with this (unanchored) pattern."""

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=f"^{NAME_PATTERN}$")]
KeyId = Annotated[str, Field(min_length=1, max_length=256)]
"""A router key's name (what the keys file calls it)."""
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]

PRIORITIES = ("low", "normal", "high")
Priority = Literal["low", "normal", "high"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a hand-edited file must fail at load, not silently
    disable what it meant to configure."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def usd_to_micro(usd: float) -> int:
    """USD -> micro-dollars, rounded DOWN (a cap of $0.0000019 allows 1 micro, not 2)."""
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))
