"""The rules file's constants and small helpers that need no pydantic: what the request path
reads (priorities, buckets, money), importable without building the validation models.

The validation models (`schema.common`, `schema.quality`, ...) re-export these, so either
import works; the request path imports them from here.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Literal

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*"
"""Providers, models, tiers, aliases and rules are named with this (unanchored) pattern."""

PRIORITIES = ("low", "normal", "high")
Priority = Literal["low", "normal", "high"]

BUCKETS = 10_000
"""Sticky ids hash to a bucket in 0..BUCKETS-1: shares (rollouts, arms) have a resolution of
0.01% (one bucket)."""

CHAT_ONLY_CONDITIONS = (
    "system_matches",
    "has_tools",
    "json_response",
    "has_images",
    "message_count",
    "max_tokens",
)
"""Conditions an embeddings rule cannot use: an embedding input has no system prompt, tools,
response format, images, messages or output limit."""

CONDITION_FIELDS = (
    "all",
    "any",
    "not_",
    "last_user_matches",
    "system_matches",
    "any_text_matches",
    "last_user_chars",
    "last_user_tokens",
    "conversation_chars",
    "conversation_tokens",
    "has_tools",
    "json_response",
    "has_images",
    "message_count",
    "max_tokens",
    "header",
    "metadata",
    "user",
)
"""`schema.Condition`'s fields in declaration order (conditions are compiled cheap-first in this
order); tests/coldstart ties it to the model."""


def usd_to_micro(usd: float) -> int:
    """USD -> micro-dollars, rounded DOWN (a cap of $0.0000019 allows 1 micro, not 2)."""
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))


def percent_to_buckets(value: object) -> int:
    """`"10%"`, `"2.5%"`, `10`, `2.5` → buckets out of BUCKETS (10% → 1000). Raises ValueError
    for anything else, out of (0, 100], or finer than one bucket (0.01%)."""
    if isinstance(value, bool):
        raise ValueError("give a percentage such as 10% or 2.5")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
    elif isinstance(value, int | float):
        text = repr(value)
    else:
        raise ValueError("give a percentage such as 10% or 2.5")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a percentage: {value!r} (give e.g. 10% or 2.5)") from None
    if not number.is_finite() or not 0 < number <= 100:
        raise ValueError(f"must be more than 0% and at most 100% (got {value!r})")
    buckets = number * BUCKETS / 100
    if buckets != buckets.to_integral_value():
        raise ValueError(f"the finest share is 0.01% (got {value!r})")
    return int(buckets)
