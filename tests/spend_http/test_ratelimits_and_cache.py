"""Per router key rate limits and the exact-match response cache, through the HTTP API.

The limiter's one-minute windows are aligned to the epoch minute; the fake clock starts
at 12:00:00 and tests move it, so resets are exact ("45s") and nothing sleeps.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio


def ratelimit_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-") or k == "retry-after"}


# --- rate limits -------------------------------------------------------------------------


async def test_requests_per_minute(make_router, rules_dict, upstream, clock) -> None:
    router = make_router(rules_dict(limits={"requests_per_minute": 3}))
    clock.advance(15)  # 12:00:15: the window resets in 45 s

    remaining = []
    for _ in range(3):
        response = await router.chat(key="team-a")
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-reset-requests"] == "45s"
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]

    limited = await router.chat(key="team-a")
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "3 requests per minute" in error["message"]
    assert ratelimit_headers(limited) == {
        "retry-after": "45",
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "45s",
    }
    assert limited.headers.get("x-should-retry") != "false"  # waiting does help here
    assert upstream.standard.call_count == 3  # the 4th never reached a provider

    clock.advance(30)  # 12:00:45, same window
    again = await router.chat(key="team-a")
    assert again.status_code == 429
    assert again.headers["retry-after"] == "15"
    assert again.headers["x-ratelimit-reset-requests"] == "15s"

    clock.advance(15)  # 12:01:00, a new window
    fresh = await router.chat(key="team-a")
    assert fresh.status_code == 200
    assert fresh.headers["x-ratelimit-remaining-requests"] == "2"
    assert fresh.headers["x-ratelimit-reset-requests"] == "60s"
    assert upstream.standard.call_count == 4

    # Refused requests cost nothing and are not counted as spend requests.
    assert (await router.status(key="team-a"))["spend"]["requests"] == 4


async def test_per_key_overrides_apply_per_router_key(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(limits={"requests_per_minute": 3, "keys": {"team-b": {"rpm": 1}}}))

    b1 = await router.chat(key="team-b")
    assert b1.status_code == 200
    assert b1.headers["x-ratelimit-limit-requests"] == "1"
    assert b1.headers["x-ratelimit-remaining-requests"] == "0"
    b2 = await router.chat(key="team-b")
    assert b2.status_code == 429
    assert b2.json()["error"]["code"] == "rate_limit_exceeded"
    assert b2.headers["x-ratelimit-limit-requests"] == "1"

    # team-a has its own window and the top-level limit, untouched by team-b's use.
    a = [await router.chat(key="team-a") for _ in range(4)]
    assert [r.status_code for r in a] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in a] == ["2", "1", "0", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in a)

    # team-b is still limited; team-a's use did not touch it either.
    assert (await router.chat(key="team-b")).status_code == 429


async def test_requests_without_a_router_key_share_one_window(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(limits={"requests_per_minute": 2}), auth=False)
    statuses = [(await router.chat()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_tokens_per_minute(make_router, rules_dict, upstream, clock) -> None:
    """Estimated tokens = prompt estimate + max_tokens; "Say hi" is 2 + 4 (message overhead) = 6."""
    router = make_router(rules_dict(limits={"tokens_per_minute": 100}))
    clock.advance(20)

    # Alone bigger than the whole minute's allowance: refused at once, retrying will not help.
    too_big = await router.chat(key="team-a", max_tokens=200)
    assert too_big.status_code == 429
    error = too_big.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["message"].startswith("Request too large")
    assert "206 tokens" in error["message"]
    assert too_big.headers["x-should-retry"] == "false"
    assert too_big.headers["x-ratelimit-limit-tokens"] == "100"
    assert too_big.headers["retry-after"] == "40"
    assert "x-ratelimit-limit-requests" not in too_big.headers  # only the limits that apply
    assert upstream.standard.call_count == 0

    # 46 tokens each: two fit (92 <= 100), the third does not.
    first = await router.chat(key="team-a", max_tokens=40)
    second = await router.chat(key="team-a", max_tokens=40)
    third = await router.chat(key="team-a", max_tokens=40)
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["x-ratelimit-remaining-tokens"] == "54"
    assert second.headers["x-ratelimit-remaining-tokens"] == "8"
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert "100 tokens per minute" in third.json()["error"]["message"]
    assert third.headers["x-ratelimit-remaining-tokens"] == "8"
    assert third.headers["x-ratelimit-reset-tokens"] == "40s"
    assert third.headers.get("x-should-retry") != "false"
    # A small one still fits in what is left: 6 + 2 = 8.
    assert (await router.chat(key="team-a", max_tokens=2)).status_code == 200
    assert upstream.standard.call_count == 3


# --- the response cache ------------------------------------------------------------------

CACHE = {"enabled": True, "ttl_s": 60}


async def test_deterministic_request_is_served_from_cache(make_router, rules_dict, upstream) -> None:
    upstream.standard.mock(
        return_value=upstream.reply(
            "standard", "The answer is 4.", {"prompt_tokens": 100, "completion_tokens": 10}
        )
    )
    router = make_router(rules_dict(cache=CACHE))
    first = await router.chat("2+2?", key="team-a", temperature=0)
    second = await router.chat("2+2?", key="team-a", temperature=0.0)  # 0.0 == 0: the same key
    assert first.status_code == second.status_code == 200
    assert first.headers["x-router-cache"] == "miss"
    assert first.headers["x-router-cost-usd"] == "0.000140"
    assert second.headers["x-router-cache"] == "hit"
    assert second.headers["x-router-cost-usd"] == "0.000000"
    assert second.headers["x-router-tier"] == "standard"
    assert second.json() == first.json()
    assert second.json()["choices"][0]["message"]["content"] == "The answer is 4."
    assert upstream.standard.call_count == 1

    # Fields that do not change the answer are not part of the key; ones that do are.
    third = await router.chat("2+2?", key="team-a", temperature=0, user="someone", metadata={"x": "y"})
    assert third.headers["x-router-cache"] == "hit"
    other = await router.chat("2+2?", key="team-a", temperature=0, max_tokens=5)
    assert other.headers["x-router-cache"] == "miss"
    assert upstream.standard.call_count == 2


async def test_cache_hits_count_in_status_and_cost_nothing(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(cache=CACHE, budgets={"daily_usd": 1}))
    for _ in range(4):
        assert (await router.chat(key="team-a", temperature=0)).status_code == 200
    await router.drain()
    spend = (await router.status(key="team-a"))["spend"]
    assert spend["requests"] == 4
    assert spend["cache_hits"] == 3
    assert spend["total_usd"] == "0.000030"  # only the miss: 10 × 1 + 5 × 4
    assert spend["by_key"] == {"team-a": "0.000030"}
    # Hits reserve and charge nothing against the budget either.
    assert await router.budget_item() == {"committed": 30, "spent": 30}
    assert upstream.standard.call_count == 1


async def test_non_deterministic_request_is_cached_only_on_opt_in(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(cache=CACHE))
    for _ in range(2):
        response = await router.chat(key="team-a", temperature=0.7)
        assert response.status_code == 200
        assert response.headers.get("x-router-cache") is None
    no_temperature = await router.chat(key="team-a")  # absent = provider default (1.0): not cached
    assert no_temperature.headers.get("x-router-cache") is None
    assert upstream.standard.call_count == 3

    on = {"x-router-cache": "on"}
    first = await router.chat(key="team-a", temperature=0.7, headers=on)
    second = await router.chat(key="team-a", temperature=0.7, headers=on)
    assert (first.headers["x-router-cache"], second.headers["x-router-cache"]) == ("miss", "hit")
    assert second.headers["x-router-cost-usd"] == "0.000000"
    assert upstream.standard.call_count == 4


async def test_cache_off_header_bypasses(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(cache=CACHE))
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    bypass = await router.chat(key="team-a", temperature=0, headers={"x-router-cache": "off"})
    assert bypass.status_code == 200
    assert bypass.headers.get("x-router-cache") != "hit"
    assert bypass.headers["x-router-cost-usd"] == "0.000030"
    assert upstream.standard.call_count == 2
    # The entry is still there for requests that do not bypass.
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "hit"
    assert upstream.standard.call_count == 2


def _stream_body(model: str) -> bytes:
    chunks = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [c],
            "usage": None,
        }
        for c in (
            {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None},
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        )
    ]
    chunks.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


async def test_stream_requests_are_never_cached(make_router, rules_dict, upstream) -> None:
    stream_reply = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=_stream_body("mid-1")
    )
    json_reply = upstream.reply("standard")

    def answer(request: httpx.Request) -> httpx.Response:
        return stream_reply if json.loads(request.content).get("stream") else json_reply

    upstream.standard.mock(side_effect=answer)
    router = make_router(rules_dict(cache=CACHE))
    on = {"x-router-cache": "on"}
    for headers in ({}, on):
        response = await router.chat(key="team-a", temperature=0, stream=True, headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers.get("x-router-cache") is None
    assert upstream.standard.call_count == 2
    # The streams stored nothing: the same body, not streamed, is a miss ...
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    # ... and once it is cached, a stream still goes to the provider.
    streamed = await router.chat(key="team-a", temperature=0, stream=True)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert upstream.standard.call_count == 4


async def test_cache_entries_expire_after_ttl(make_router, rules_dict, upstream, clock) -> None:
    router = make_router(rules_dict(cache=CACHE))
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    clock.advance(59)
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "hit"
    clock.advance(2)  # 61 s after it was stored
    expired = await router.chat(key="team-a", temperature=0)
    assert expired.headers["x-router-cache"] == "miss"
    assert expired.headers["x-router-cost-usd"] == "0.000030"
    assert upstream.standard.call_count == 2
    # Stored again, with a fresh TTL.
    clock.advance(30)
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "hit"


async def test_tier_ttl_override(make_router, rules_dict, upstream, clock) -> None:
    router = make_router(rules_dict(cache={**CACHE, "tiers": {"premium": {"ttl_s": 5}}}))
    for model in ("premium", "standard"):
        assert (await router.chat(model=model, key="team-a", temperature=0)).headers[
            "x-router-cache"
        ] == "miss"
    clock.advance(6)
    assert (await router.chat(model="premium", key="team-a", temperature=0)).headers[
        "x-router-cache"
    ] == "miss"
    assert (await router.chat(model="standard", key="team-a", temperature=0)).headers[
        "x-router-cache"
    ] == "hit"


async def test_cache_is_per_router_key_by_default(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(cache=CACHE))  # scope: key is the default
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    assert (await router.chat(key="team-b", temperature=0)).headers["x-router-cache"] == "miss"
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "hit"
    assert (await router.chat(key="team-b", temperature=0)).headers["x-router-cache"] == "hit"
    assert upstream.standard.call_count == 2


async def test_global_scope_shares_entries_across_keys(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict(cache={**CACHE, "scope": "global"}))
    assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    assert (await router.chat(key="team-b", temperature=0)).headers["x-router-cache"] == "hit"
    assert upstream.standard.call_count == 1


async def test_cache_is_per_tier(make_router, rules_dict, upstream) -> None:
    """`auto` routed to standard and `standard` share entries; premium does not."""
    router = make_router(rules_dict(cache=CACHE))
    assert (await router.chat(model="standard", key="team-a", temperature=0)).headers[
        "x-router-cache"
    ] == "miss"
    assert (await router.chat(model="auto", key="team-a", temperature=0)).headers["x-router-cache"] == "hit"
    premium = await router.chat(model="premium", key="team-a", temperature=0)
    assert premium.headers["x-router-cache"] == "miss"
    assert upstream.premium.call_count == 1


async def test_incomplete_answers_are_not_cached(make_router, rules_dict, upstream) -> None:
    upstream.standard.mock(return_value=upstream.reply("standard", "cut off", finish="length"))
    router = make_router(rules_dict(cache=CACHE))
    for _ in range(2):
        assert (await router.chat(key="team-a", temperature=0)).headers["x-router-cache"] == "miss"
    assert upstream.standard.call_count == 2


@pytest.mark.parametrize(
    "cache_section",
    [pytest.param(None, id="no-cache-section"), pytest.param({"enabled": False}, id="enabled-false")],
)
async def test_cache_header_cannot_turn_on_a_cache_the_rules_file_left_off(
    make_router, rules_dict, upstream, cache_section: dict[str, Any] | None
) -> None:
    """BUG: `CacheConfig` says the cache is "Off unless `enabled: true`" and admission runs a
    step "only when its rules-file section is configured" — yet with no `cache:` section (the
    shipped rules/router.yaml) any client can make the router store and replay answers in
    the shared store by sending `x-router-cache: on`, because the default header name makes
    `SpendControls.__init__`'s `uses_cache` always true and `_cached` accepts `opt_in` in
    place of `policy.enabled`."""
    rules = rules_dict() if cache_section is None else rules_dict(cache=cache_section)
    router = make_router(rules)
    on = {"x-router-cache": "on"}
    first = await router.chat(key="team-a", temperature=0, headers=on)
    second = await router.chat(key="team-a", temperature=0, headers=on)
    assert first.status_code == second.status_code == 200
    assert second.headers.get("x-router-cache") != "hit"
    assert upstream.standard.call_count == 2


async def test_tokens_per_minute_counts_n_and_tool_call_arguments(make_router, rules_dict, upstream) -> None:
    """Issue 13, item 1's rate-limit side: `n: 8` asks for 8 answers of `max_tokens` each, and a
    tool-call history's arguments are input like any text. Both used to count as one small
    request (n ignored; arguments invisible), so a key could pass its tokens-per-minute 8x over."""
    router = make_router(rules_dict(limits={"tokens_per_minute": 1000}))
    many = await router.chat(key="team-a", max_tokens=200, n=8)  # 8 x 200 > 1000
    assert many.status_code == 429
    assert "Request too large" in many.json()["error"]["message"]

    arguments = '{"rows": "' + "x" * 8000 + '"}'  # ~2,000 tokens of arguments
    history = [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    long_history = await router.chat(key="team-a", messages=history, max_tokens=10)
    assert long_history.status_code == 429
    assert "Request too large" in long_history.json()["error"]["message"]
