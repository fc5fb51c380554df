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

What the cached reads saved (`cache_savings_micro_usd`) is cached × (input − cached_input),
rounded DOWN: the ledger's savings are never overstated (they are reporting, not a charge).

`cache_write_multiplier` is 1.25 by default: Anthropic's 5-minute cache-write price (its
1-hour writes cost 2×; pass 2.0 if you use them). Missing, None, negative or non-numeric
fields count as 0; a usage with only `total_tokens` is charged entirely at the dearer of
the input and output prices (we cannot tell them apart, so we assume the worst).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tier_router.schema import Price

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


@dataclass(frozen=True, slots=True)
class Rates:
    """One price as exact SCALE-scaled integers, ready for integer math."""

    input: int
    cached_input: int
    output: int

    def plain_cost(self, prompt: int, completion: int) -> int:
        """Micro-dollars, rounded up, for uncached input and output only."""
        return -(-(prompt * self.input + completion * self.output) // SCALE)


_RATES: dict[int, tuple[Price, Rates | None]] = {}


def rates_of(price: Price) -> Rates | None:
    """`price` as Rates, or None if a price has more decimals than SCALE holds. Computed once per
    Price object (that is, per model of a loaded rules file), looked up on every response."""
    entry = _RATES.get(id(price))
    if entry is not None and entry[0] is price:
        return entry[1]
    cached_input = price.input if price.cached_input is None else price.cached_input
    scaled = (_scaled(price.input), _scaled(cached_input), _scaled(price.output))
    rates = None if None in scaled else Rates(*scaled)  # type: ignore[arg-type]
    if len(_RATES) > 4096:  # rules files reloaded many times over: start afresh
        _RATES.clear()
    _RATES[id(price)] = (price, rates)
    return rates


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
    cached = written = written_1h = 0
    if isinstance(details, Mapping):
        cached = min(_count(details.get("cached_tokens")) or 0, prompt)
        written = min(_count(details.get("cache_write_tokens")) or 0, prompt - cached)
        written_1h = min(_count(details.get("cache_write_1h_tokens")) or 0, written)  # Anthropic's 1-h TTL
    uncached = prompt - cached - written

    rates = rates_of(price)
    if rates is not None:
        plain = uncached * rates.input + cached * rates.cached_input + completion * rates.output
        if not written:
            return -(-plain // SCALE)  # ceiling division
        write, write_1h = _scaled(cache_write_multiplier), _scaled(cache_write_1h_multiplier)
        if write is not None and write_1h is not None:
            writes = (written - written_1h) * write + written_1h * write_1h
            return -(-(plain * SCALE + writes * rates.input) // (SCALE * SCALE))

    # A price or multiplier with more than 12 decimals: exact Decimal arithmetic.
    dinp = _dec(price.input)
    micro = (
        uncached * dinp
        + cached * _dec(price.input if price.cached_input is None else price.cached_input)
        + (written - written_1h) * dinp * _dec(cache_write_multiplier)
        + written_1h * dinp * _dec(cache_write_1h_multiplier)
        + completion * _dec(price.output)
    )
    return _ceil(micro)


def cached_tokens(usage: Mapping[str, Any] | None) -> int:
    """The cached input tokens (`prompt_tokens_details.cached_tokens`) of `usage`, as the cost
    counts them: never negative, never more than `prompt_tokens` when that is given."""
    if not isinstance(usage, Mapping):
        return 0
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, Mapping):
        return 0
    cached = _count(details.get("cached_tokens")) or 0
    prompt = _count(usage.get("prompt_tokens"))
    return cached if prompt is None else min(cached, prompt)


def cache_savings_micro_usd(price: Price, usage: Mapping[str, Any] | None) -> int:
    """What the cached reads of `usage` saved at `price`: cached tokens × (input − cached_input),
    in micro-dollars rounded DOWN (0 without cached reads or without a cached price)."""
    cached = cached_tokens(usage)
    if not cached or price.cached_input is None:
        return 0
    rates = rates_of(price)
    if rates is not None:
        return cached * (rates.input - rates.cached_input) // SCALE  # floor division
    saved = cached * (_dec(price.input) - _dec(price.cached_input))
    return int(saved.to_integral_value(rounding=ROUND_FLOOR))


def worst_case_micro_usd(price: Price, input_tokens: int, max_output_tokens: int) -> int:
    """An upper bound for a request not yet sent: every input token uncached at the input
    price, every allowed output token produced. The caller inflates `input_tokens` (it is
    an estimate) — see `BudgetGuard.estimate`."""
    rates = rates_of(price)
    if rates is not None:
        return rates.plain_cost(max(input_tokens, 0), max(max_output_tokens, 0))
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
