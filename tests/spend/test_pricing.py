"""Cost arithmetic against a hand-computed table (prices are USD per 1M tokens = µ$/token)."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tier_router.schema import Price
from tier_router.spend.pricing import cost_micro_usd, usd, worst_case_micro_usd

DEEPSEEK = Price(input=0.28, cached_input=0.028, output=0.42)
FLASH_LITE = Price(input=0.10, cached_input=0.01, output=0.40)
SONNET = Price(input=3.00, cached_input=0.30, output=15.00)
GPT41 = Price(input=2.00, cached_input=0.50, output=8.00)
NO_CACHE_PRICE = Price(input=1.00, output=2.00)


def usage(prompt: int | None, completion: int | None, cached: int = 0, written: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if prompt is not None:
        out["prompt_tokens"] = prompt
    if completion is not None:
        out["completion_tokens"] = completion
    out["total_tokens"] = (prompt or 0) + (completion or 0)
    details: dict[str, int] = {}
    if cached:
        details["cached_tokens"] = cached
    if written:
        details["cache_write_tokens"] = written
    if details:
        out["prompt_tokens_details"] = details
    return out


@pytest.mark.parametrize(
    ("price", "used", "expected"),
    [
        # plain: 1000 × 0.28 + 500 × 0.42 = 280 + 210
        (DEEPSEEK, usage(1000, 500), 490),
        # cached reads: 200 × 0.28 + 800 × 0.028 + 100 × 0.42 = 56 + 22.4 + 42 = 120.4 → 121
        (DEEPSEEK, usage(1000, 100, cached=800), 121),
        # 0.028 × 1000 is 28.000000000000004 in floats; exactly 28 here (no spurious round-up)
        (DEEPSEEK, usage(1000, 0, cached=1000), 28),
        # cache writes: 3000 × 3 + 2000 × 0.30 + 5000 × 3 × 1.25 + 1000 × 15 = 9000 + 600 + 18750 + 15000
        (SONNET, usage(10_000, 1000, cached=2000, written=5000), 43_350),
        # tiny: 3 × 0.10 + 1 × 0.40 = 0.7 → 1 (rounded up once, at the end)
        (FLASH_LITE, usage(3, 1), 1),
        # tiny with cache: 10 × 0.01 = 0.1, plus 1 × 0.1 uncached = 0.2 → 1
        (FLASH_LITE, usage(11, 0, cached=10), 1),
        # zero
        (SONNET, usage(0, 0), 0),
        # big: 1e9 × 2 + 1e7 × 8 = $2,080
        (GPT41, usage(1_000_000_000, 10_000_000), 2_080_000_000),
        # big with cache: 4e8 × 2 + 6e8 × 0.5 + 1e6 × 8 = 8e8 + 3e8 + 8e6
        (GPT41, usage(1_000_000_000, 1_000_000, cached=600_000_000), 1_108_000_000),
        # no cached_input price: cached tokens cost the input price
        (NO_CACHE_PRICE, usage(1000, 10, cached=500), 1020),
        # cached + written more than prompt: clamped (never negative uncached input)
        (DEEPSEEK, usage(100, 0, cached=500), 3),  # 100 × 0.028 = 2.8 → 3
        (SONNET, usage(100, 0, cached=60, written=60), 168),  # 60 × 0.3 + 40 × 3.75 = 18 + 150
    ],
)
def test_cost_table(price: Price, used: dict[str, Any], expected: int) -> None:
    assert cost_micro_usd(price, used) == expected


def test_cache_write_multiplier_is_configurable() -> None:
    # 1-hour Anthropic cache writes cost 2× input: 1000 × 3 × 2
    assert cost_micro_usd(SONNET, usage(1000, 0, written=1000), cache_write_multiplier=2.0) == 6000
    assert cost_micro_usd(SONNET, usage(1000, 0, written=1000)) == 3750


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        (None, 0),
        ({}, 0),
        ("garbage", 0),
        ({"total_tokens": 0}, 0),
        # only a total: all of it at the dearer price (output, 15)
        ({"total_tokens": 1000}, 15_000),
        # prompt + total, no completion: completion = total − prompt = 50 → 300 + 750
        ({"prompt_tokens": 100, "total_tokens": 150}, 1050),
        # completion + total, no prompt: prompt = 50
        ({"completion_tokens": 100, "total_tokens": 150}, 1650),
        # None / bool / negative / strings count as absent or zero
        ({"prompt_tokens": None, "completion_tokens": 10}, 150),
        ({"prompt_tokens": -5, "completion_tokens": 10}, 150),
        ({"prompt_tokens": "100", "completion_tokens": True, "total_tokens": 100}, 1500),
        ({"prompt_tokens": 100, "completion_tokens": 0, "prompt_tokens_details": None}, 300),
        (
            {"prompt_tokens": 100, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": None}},
            300,
        ),
        # float token counts (some gateways send them) are rounded up
        ({"prompt_tokens": 99.5, "completion_tokens": 0}, 300),
        ({"prompt_tokens": float("nan"), "completion_tokens": 1}, 15),
    ],
)
def test_robust_to_odd_usage(used: Any, expected: int) -> None:
    assert cost_micro_usd(SONNET, used) == expected


def test_worst_case() -> None:
    assert worst_case_micro_usd(SONNET, 1000, 4096) == 3000 + 61_440
    assert worst_case_micro_usd(DEEPSEEK, 1000, 1000) == 280 + 420
    assert worst_case_micro_usd(FLASH_LITE, 1, 0) == 1  # 0.1 → 1
    assert worst_case_micro_usd(SONNET, -1, -1) == 0


def test_worst_case_bounds_actual() -> None:
    """Whatever the usage split, the actual cost of ≤N input / ≤M output tokens stays under
    the worst case as long as no cache writes happen (those are what the margin is for)."""
    worst = worst_case_micro_usd(SONNET, 1000, 500)
    for cached in (0, 500, 1000):
        assert cost_micro_usd(SONNET, usage(1000, 500, cached=cached)) <= worst


@pytest.mark.parametrize(
    ("micro", "places", "text"),
    [
        (0, 6, "0.000000"),
        (123, 6, "0.000123"),
        (1_000_000, 6, "1.000000"),
        (2_080_000_000, 6, "2080.000000"),
        (-5, 6, "-0.000005"),
        (3_204_999, 2, "3.20"),
        (3_205_000, 2, "3.21"),  # half up
        (50_000_000, 2, "50.00"),
        (1, 2, "0.00"),
    ],
)
def test_usd(micro: int, places: int, text: str) -> None:
    assert usd(micro, places) == text


# --- integer arithmetic against an independent Decimal oracle ------------------------------------

PRICES = st.sampled_from([0.0, 0.028, 0.1, 0.075, 0.0375, 1.25, 3.0, 15.0, 75.0, 1e-10, 1e-13, 0.123456789])


def oracle(
    price: Price, prompt: int, completion: int, cached: int, written: int, written_1h: int, mult: float
) -> int:
    """The formula of the module docstring, in Decimal, written independently of the module."""
    d = lambda x: Decimal(repr(float(x)))  # noqa: E731 - the price as written
    inp = d(price.input)
    cached_price = inp if price.cached_input is None else d(price.cached_input)
    micro = (
        (prompt - cached - written) * inp
        + cached * cached_price
        + (written - written_1h) * inp * d(mult)
        + written_1h * inp * d(2.0)
        + completion * d(price.output)
    )
    return int(micro.to_integral_value(rounding=ROUND_CEILING))


@settings(max_examples=500, deadline=None)
@given(
    PRICES,
    PRICES,
    st.none() | PRICES,
    st.integers(0, 10**8),
    st.integers(0, 10**7),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
    st.integers(0, 10**8),
    st.sampled_from([1.25, 1.3, 2.0, 1.0000000000001]),
)
def test_integer_pricing_equals_exact_decimal(
    pin: float,
    pout: float,
    pcached: float | None,
    prompt: int,
    completion: int,
    c: int,
    w: int,
    w1: int,
    mult: float,
) -> None:
    price = Price(input=pin, output=pout, cached_input=pcached)
    cached = min(c, prompt)
    written = min(w, prompt - cached)
    written_1h = min(w1, written)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {
            "cached_tokens": c,
            "cache_write_tokens": w,
            "cache_write_1h_tokens": w1,
        },
    }
    expected = oracle(price, prompt, completion, cached, written, written_1h, mult)
    assert cost_micro_usd(price, usage, cache_write_multiplier=mult) == expected


@settings(max_examples=300, deadline=None)
@given(PRICES, PRICES, st.integers(-5, 10**8), st.integers(-5, 10**7))
def test_worst_case_equals_exact_decimal(pin: float, pout: float, inp: int, out: int) -> None:
    price = Price(input=pin, output=pout)
    d = lambda x: Decimal(repr(float(x)))  # noqa: E731 - the price as written
    expected = int((max(inp, 0) * d(pin) + max(out, 0) * d(pout)).to_integral_value(rounding=ROUND_CEILING))
    assert worst_case_micro_usd(price, inp, out) == expected
