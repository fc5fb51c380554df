"""Per-key requests/tokens per minute, with OpenAI-style headers."""

from __future__ import annotations

import logging

import pytest
from tier_router.schema import KeyRateLimit, RateLimitConfig
from tier_router.spend.ratelimit import Allowed, Limited, RateLimiter, format_reset
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at
from tests.support.stores import Failing, Observing

pytestmark = pytest.mark.anyio

T0 = at(2026, 11, 23, 12, 0, 12)  # 12 s into a window: it resets in 48 s


async def test_requests_limit_hits_at_exactly_n(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    limiter = RateLimiter(store, RateLimitConfig(requests_per_minute=3), clock=clock)
    for remaining in (2, 1, 0):
        verdict = await limiter.check("k", 10)
        assert isinstance(verdict, Allowed)
        assert verdict.headers == {
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": "48s",
        }
    limited = await limiter.check("k", 10)
    assert isinstance(limited, Limited)
    assert (limited.limit, limited.limit_value, limited.retry_after_s) == ("requests", 3, 48)
    assert limited.headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "48s",
        "retry-after": "48",
    }
    assert "3 requests per minute" in limited.message
    assert "48s" in limited.message
    clock.advance(47.5)  # still the same window, half a second left
    late = await limiter.check("k", 10)
    assert isinstance(late, Limited)
    assert late.retry_after_s == 1
    assert late.headers["x-ratelimit-reset-requests"] == "500ms"


async def test_window_rollover(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    limiter = RateLimiter(store, RateLimitConfig(requests_per_minute=2), clock=clock)
    assert isinstance(await limiter.check("k", 1), Allowed)
    assert isinstance(await limiter.check("k", 1), Allowed)
    assert isinstance(await limiter.check("k", 1), Limited)
    clock.now = at(2026, 11, 23, 12, 1, 0)  # the next minute starts
    fresh = await limiter.check("k", 1)
    assert isinstance(fresh, Allowed)
    assert fresh.headers["x-ratelimit-remaining-requests"] == "1"
    assert fresh.headers["x-ratelimit-reset-requests"] == "60s"
    clock.now = at(2026, 11, 23, 12, 5, 30)  # windows long gone (and their items expired)
    assert (await limiter.check("k", 1)).headers["x-ratelimit-remaining-requests"] == "1"  # type: ignore[union-attr]


async def test_tokens_limit(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    limiter = RateLimiter(store, RateLimitConfig(tokens_per_minute=1000), clock=clock)
    first = await limiter.check("k", 400)
    assert isinstance(first, Allowed)
    assert first.headers == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-reset-tokens": "48s",
    }
    assert isinstance(await limiter.check("k", 600), Allowed)  # exactly at the limit
    limited = await limiter.check("k", 1)
    assert isinstance(limited, Limited)
    assert limited.limit == "tokens"
    assert not limited.too_large
    assert limited.headers["x-ratelimit-remaining-tokens"] == "0"
    assert limited.retry_after_s == 48


async def test_both_limits_and_which_one_refused(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    limiter = RateLimiter(store, RateLimitConfig(rpm=10, tpm=1000), clock=clock)
    assert isinstance(await limiter.check("k", 900), Allowed)
    refused = await limiter.check("k", 200)
    assert isinstance(refused, Limited)
    assert refused.limit == "tokens"
    assert refused.headers["x-ratelimit-remaining-requests"] == "9"  # the refused one is not counted
    assert refused.headers["x-ratelimit-remaining-tokens"] == "100"
    small = await limiter.check("k", 100)
    assert isinstance(small, Allowed)
    assert small.headers["x-ratelimit-remaining-requests"] == "8"


async def test_request_larger_than_the_token_limit(clock: FakeClock) -> None:
    clock.now = T0
    observed = Observing(MemoryStore(clock=clock))
    limiter = RateLimiter(observed, RateLimitConfig(rpm=5, tpm=1000), clock=clock)
    refused = await limiter.check("k", 1001)
    assert isinstance(refused, Limited)
    assert refused.too_large
    assert refused.limit == "tokens"
    assert "Request too large" in refused.message
    assert "1001" in refused.message
    assert refused.headers["retry-after"] == "48"
    assert observed.calls == {}  # not counted: it could never pass


async def test_per_key_override_inherits_the_rest(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    config = RateLimitConfig(
        requests_per_minute=1, tokens_per_minute=500, keys={"vip": KeyRateLimit(requests_per_minute=3)}
    )
    limiter = RateLimiter(store, config, clock=clock)
    assert isinstance(await limiter.check("regular", 10), Allowed)
    assert isinstance(await limiter.check("regular", 10), Limited)
    for _ in range(3):
        assert isinstance(await limiter.check("vip", 10), Allowed)
    assert isinstance(await limiter.check("vip", 10), Limited)
    big = await limiter.check("vip-2", 600)
    assert isinstance(big, Limited)
    assert big.too_large
    vip_tokens = await RateLimiter(MemoryStore(clock=clock), config, clock=clock).check("vip", 501)
    assert isinstance(vip_tokens, Limited)
    assert vip_tokens.too_large


async def test_keys_are_separate_and_safely_encoded(store: Store, clock: FakeClock) -> None:
    clock.now = T0
    limiter = RateLimiter(store, RateLimitConfig(requests_per_minute=1), clock=clock)
    for key in ("a", "a:1", "a/1", "ключ"):
        assert isinstance(await limiter.check(key, 1), Allowed), key


async def test_no_limits_no_store_traffic(clock: FakeClock) -> None:
    broken = Failing(MemoryStore(clock=clock))
    limiter = RateLimiter(broken, RateLimitConfig(keys={"x": KeyRateLimit(rpm=1)}), clock=clock)
    verdict = await limiter.check("other", 10_000)
    assert isinstance(verdict, Allowed)
    assert verdict.headers == {}
    assert broken.calls == 0


async def test_store_down_allows(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    limiter = RateLimiter(Failing(MemoryStore(clock=clock)), RateLimitConfig(rpm=1), clock=clock)
    with caplog.at_level(logging.WARNING, "tier_router.spend.ratelimit"):
        for _ in range(3):
            verdict = await limiter.check("k", 1)
            assert isinstance(verdict, Allowed)
            assert verdict.headers == {}
    assert sum("rate-limit store failed" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(48.0, "48s"), (47.2, "48s"), (1.0, "1s"), (0.5, "500ms"), (0.0001, "1ms"), (60.0, "60s")],
)
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text
