"""What one request costs, in integer micro-dollars.

Why micro-dollars per token: providers list USD per 1M tokens, and USD per 1M tokens is
exactly micro-dollars per token — so cost = Σ tokens × price, no scaling. Prices are
floats in the rules file (0.028 has no exact binary form: 1000 × 0.028 is
28.000000000000004 in floats), so each price goes through `Decimal(str(price))` — the
number as written — and the sum is rounded UP to an integer once, at the end. Rounding up
keeps budgets conservative: a request is never recorded as cheaper than it was.

Usage is the OpenAI shape; `prompt_tokens` INCLUDES cached reads and cache writes:

    uncached input = prompt - cached - cache_write     at price.input
    cached reads   = prompt_tokens_details.cached_tokens   at price.cached_input (else input)
    cache writes   = prompt_tokens_details.cache_write_tokens  at input × cache_write_multiplier
    output         = completion_tokens                 at price.output

`cache_write_multiplier` is 1.25 by default: Anthropic's 5-minute cache-write price (its
1-hour writes cost 2×; pass 2.0 if you use them). Missing, None, negative or non-numeric
fields count as 0; a usage with only `total_tokens` is charged entirely at the dearer of
the input and output prices (we cannot tell them apart, so we assume the worst).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from tier_router.routing.schema import Price

_ONE_MILLION = Decimal(1_000_000)
SCALE = 10**12
"""Prices and multipliers are held as exact integers in units of 1e-12: every price anyone writes
(0.028, 1.25, 0.000075) is exact there, and the cost is integer arithmetic — exact like Decimal,
without Decimal's cost on every response."""


@lru_cache(maxsize=1024)
def _dec(value: float) -> Decimal:
    """A price as written (`0.028`, not its binary approximation). Cached: prices are few."""
    return Decimal(repr(float(value)))


@lru_cache(maxsize=1024)
def _scaled(value: float) -> int | None:
    """`value` × SCALE as an exact integer, or None if it has more decimals than SCALE holds."""
    exact = _dec(value) * SCALE
    return int(exact) if exact == exact.to_integral_value() else None


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def _count(value: Any) -> int | None:
    """A token count from untrusted JSON: None when absent/unusable, never negative."""
    if value.__class__ is int:  # the usual case, first
        return value if value > 0 else 0
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(math.ceil(value), 0)
    return None


def cost_micro_usd(
    price: Price,
    usage: Mapping[str, Any] | None,
    *,
    cache_write_multiplier: float = 1.25,
    cache_write_1h_multiplier: float = 2.0,
) -> int:
    """The cost of one response's `usage` at `price`, in micro-dollars, rounded up."""
    if not isinstance(usage, Mapping):
        return 0
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    total = _count(usage.get("total_tokens"))

    if prompt is None and completion is None:
        return _ceil(total * max(_dec(price.input), _dec(price.output))) if total else 0
    if completion is None:
        completion = max((total or 0) - (prompt or 0), 0)
    if prompt is None:
        prompt = max((total or 0) - completion, 0)

    details = usage.get("prompt_tokens_details")
    if not isinstance(details, Mapping):
        details = {}
    cached = min(_count(details.get("cached_tokens")) or 0, prompt)
    written = min(_count(details.get("cache_write_tokens")) or 0, prompt - cached)
    written_1h = min(_count(details.get("cache_write_1h_tokens")) or 0, written)  # Anthropic's 1-hour TTL
    uncached = prompt - cached - written
    cached_input = price.input if price.cached_input is None else price.cached_input

    scaled = [
        _scaled(x)
        for x in (price.input, cached_input, price.output, cache_write_multiplier, cache_write_1h_multiplier)
    ]
    if None not in scaled:
        inp, cached_price, out, write_mult, write_1h_mult = scaled  # all SCALE-scaled ints
        micro_x_scale2 = (
            (uncached * inp + cached * cached_price + completion * out) * SCALE
            + (written - written_1h) * inp * write_mult  # type: ignore[operator]
            + written_1h * inp * write_1h_mult  # type: ignore[operator]
        )
        return -(-micro_x_scale2 // (SCALE * SCALE))  # ceiling division

    # A price with more than 12 decimals: exact Decimal arithmetic.
    dinp = _dec(price.input)
    micro = (
        uncached * dinp
        + cached * _dec(cached_input)
        + (written - written_1h) * dinp * _dec(cache_write_multiplier)
        + written_1h * dinp * _dec(cache_write_1h_multiplier)
        + completion * _dec(price.output)
    )
    return _ceil(micro)


def worst_case_micro_usd(price: Price, input_tokens: int, max_output_tokens: int) -> int:
    """An upper bound for a request not yet sent: every input token uncached at the input
    price, every allowed output token produced. The caller inflates `input_tokens` (it is
    an estimate) — see `BudgetGuard.estimate`."""
    return _ceil(max(input_tokens, 0) * _dec(price.input) + max(max_output_tokens, 0) * _dec(price.output))


def usd(micro: int, places: int = 6) -> str:
    """Micro-dollars as a plain USD amount: usd(123) == "0.000123", usd(3_204_000, 2) == "3.20"."""
    if places == 6:  # the per-response header: integer formatting, exact and cheap
        sign = "-" if micro < 0 else ""
        whole, fraction = divmod(abs(micro), 1_000_000)
        return f"{sign}{whole}.{fraction:06d}"
    amount = Decimal(micro) / _ONE_MILLION
    if places < 6:
        amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{amount:.{places}f}"
