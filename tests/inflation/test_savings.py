"""What a provider's prompt cache saved: cached tokens × (input − cached_input), exact, rounded
DOWN (never overstated), next to the cost (rounded up) of the same usage."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tier_router.schema import Price
from tier_router.spend.pricing import cache_savings_micro_usd, cached_tokens, cost_micro_usd

SONNET = Price(input=3.00, cached_input=0.30, output=15.00)
DEEPSEEK = Price(input=0.28, cached_input=0.028, output=0.42)
MINI = Price(input=0.15, cached_input=0.075, output=0.60)
NO_CACHE_PRICE = Price(input=1.00, output=2.00)


def usage(prompt: int, completion: int = 0, cached: Any = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


@pytest.mark.parametrize(
    ("price", "used", "saved"),
    [
        (SONNET, usage(50_100, 40, 50_000), 135_000),  # 50,000 × 2.70
        (DEEPSEEK, usage(10_000, 0, 10_000), 2_520),  # 10,000 × 0.252, exact (not 2519.999...)
        (MINI, usage(100, 0, 13), 0),  # 13 × 0.075 = 0.975: rounded down
        (MINI, usage(100, 0, 14), 1),  # 1.05
        (MINI, usage(100, 0, 0), 0),
        (NO_CACHE_PRICE, usage(100, 0, 100), 0),  # no cached price: cached reads cost the input price
        (SONNET, usage(100, 0, 500), 270),  # more cached than prompt: the prompt's 100 (as the cost counts)
        (SONNET, {"completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 10}}, 27),
    ],
)
def test_savings_table(price: Price, used: dict[str, Any], saved: int) -> None:
    assert cache_savings_micro_usd(price, used) == saved


@pytest.mark.parametrize(
    "used",
    [None, {}, "x", usage(10, 0, None), usage(10, 0, -5), usage(10, 0, "9"), {"prompt_tokens_details": 3}],
)
def test_odd_usage_saves_nothing(used: Any) -> None:
    assert cached_tokens(used) == 0
    assert cache_savings_micro_usd(SONNET, used) == 0


def test_a_price_with_more_decimals_than_the_integer_path_holds() -> None:
    """13 decimals: the exact Decimal path, still floored: 3 × 0.5000000000005 = 1.5000000000015."""
    price = Price(input=1.0000000000005, cached_input=0.5, output=1.0)
    assert cache_savings_micro_usd(price, usage(10, 0, 3)) == 1
    assert cache_savings_micro_usd(price, usage(10, 0, 2)) == 1  # 1.000000000001


PRICES = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("90"), places=3).map(float)


@settings(max_examples=300, deadline=None)
@given(
    input_price=PRICES,
    share=st.integers(0, 100),
    prompt=st.integers(0, 2_000_000),
    cached_part=st.integers(0, 100),
    completion=st.integers(0, 100_000),
)
def test_savings_never_overstate_and_add_up_with_the_cost(
    input_price: float, share: int, prompt: int, cached_part: int, completion: int
) -> None:
    """The saving is the exact difference floored; the cost with the cache plus the saving is
    what the same usage would cost uncached, give or take the two roundings (cost up, saving
    down: at most 1 µ$ apart)."""
    cached_price = float(Decimal(repr(input_price)) * share / 100)
    price = Price(input=input_price, cached_input=cached_price, output=2.0)
    cached = prompt * cached_part // 100
    exact = cached * (Fraction(repr(input_price)) - Fraction(repr(cached_price)))
    saved = cache_savings_micro_usd(price, usage(prompt, completion, cached))
    assert saved <= exact < saved + 1
    uncached = cost_micro_usd(price, usage(prompt, completion))
    assert 0 <= uncached - (cost_micro_usd(price, usage(prompt, completion, cached)) + saved) <= 1
