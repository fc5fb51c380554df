"""The reservation covers a mid-stream recovery (issue 14's, found by issue 15's adversary): a
one-choice stream cut after content is finished by the next candidate from a prefill, which
bills the prompt again plus the text already sent, and another answer. The hard cap holds only
if the reservation counts that call too — once per allowed recovery (`max_stream_recoveries`).

Prices are USD per 1M tokens, so a token at price p costs p micro-dollars: the arithmetic below
is exact. The input bound (`bound(body)`) is read from the code; everything else is by hand.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from tier_router.admission import SpendControls
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.spend.reservation import bound
from tier_router.store.memory import MemoryStore

MARGIN = 1.5  # budgets.reservation_margin's default
MAX_TOKENS = 100


def rules(recoveries: int) -> Any:
    return parse_rules(
        {
            "providers": {"p": {"kind": "openai", "base_url": "https://p.test/v1", "api_key_env": "K"}},
            "models": {
                "a": {"provider": "p", "id": "a", "price": {"input": 1, "output": 4}},
                "b": {"provider": "p", "id": "b", "price": {"input": 2, "output": 3}},
            },
            "tiers": {"main": ["a", "b"]},
            "default_tier": "main",
            "budgets": {"daily_usd": 100},
            "routing": {"max_stream_recoveries": recoveries},
        }
    )


async def reserved(recoveries: int, **params: Any) -> int:
    loaded = rules(recoveries)
    body = {"model": "main", "messages": [{"role": "user", "content": "hello " * 50}], **params}
    controls = SpendControls(MemoryStore(), loaded)
    admission = await controls.admit(loaded.decide(parse_chat(body)), body, None, {})
    assert admission.reservation is not None
    return admission.reservation.reserved


def one_call(input_tokens: int, output: int) -> int:
    """The dearer of a (1 in, 4 out) and b (2 in, 3 out), input inflated by the margin."""
    inflated = math.ceil(input_tokens * MARGIN)
    return max(inflated * 1 + output * 4, inflated * 2 + output * 3)


def prompt_bound() -> int:
    body = {"model": "main", "messages": [{"role": "user", "content": "hello " * 50}]}
    return bound(body, 765).input_tokens


@pytest.mark.anyio
async def test_a_plain_request_reserves_one_call() -> None:
    assert await reserved(1, max_tokens=MAX_TOKENS) == one_call(prompt_bound(), MAX_TOKENS)


@pytest.mark.anyio
async def test_a_stream_reserves_its_recovery_too() -> None:
    first = one_call(prompt_bound(), MAX_TOKENS)
    recovery = one_call(prompt_bound() + MAX_TOKENS, MAX_TOKENS)  # the prompt + the prefill, again
    assert await reserved(1, max_tokens=MAX_TOKENS, stream=True) == first + recovery
    assert await reserved(2, max_tokens=MAX_TOKENS, stream=True) == first + 2 * recovery


@pytest.mark.anyio
async def test_streams_that_are_never_recovered_reserve_one_call() -> None:
    first = one_call(prompt_bound(), MAX_TOKENS)
    assert await reserved(0, max_tokens=MAX_TOKENS, stream=True) == first  # recovery off
    assert await reserved(1, max_tokens=MAX_TOKENS, stream=True, n=2) == one_call(
        prompt_bound(), 2 * MAX_TOKENS
    )
