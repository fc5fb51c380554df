"""What requests cost, as the HTTP API reports it: `x-router-cost-usd`, the streamed usage
chunk's `cost_usd`, and today's totals in `/v1/router/status`.

Every expected cost below is worked out by hand from the price table in conftest.py
(USD per 1M tokens = micro-dollars per token; the sum is rounded UP once, at the end).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.openai_bodies import chunks, parse_sse

pytestmark = pytest.mark.anyio


# Anthropic's answer with both cache reads and 5-minute cache writes (a real response's shape).
CACHED_MESSAGE: dict[str, Any] = {
    "id": "msg_cache",
    "type": "message",
    "role": "assistant",
    "model": "claude-t-20250219",
    "content": [{"type": "text", "text": "Thirty days' written notice."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 188086,
        "cache_read_input_tokens": 1024,
        "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 393,
        "service_tier": "standard",
    },
}

ANTHROPIC_STREAM = """event: message_start
data: {"type":"message_start","message":{"id":"msg_s","type":"message","role":"assistant","model":"claude-t","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":14}}

event: message_stop
data: {"type":"message_stop"}

"""  # noqa: E501


# --- x-router-cost-usd on buffered responses --------------------------------------------


@pytest.mark.parametrize(
    ("tier", "usage", "expected"),
    [
        # big: 1000 × 2.5 + 500 × 10 = 2500 + 5000
        pytest.param("premium", {"prompt_tokens": 1000, "completion_tokens": 500}, "0.007500", id="plain"),
        # big, 800 of 1000 prompt tokens read from the provider's cache at cached_input 1.25:
        # 200 × 2.5 + 800 × 1.25 + 100 × 10 = 500 + 1000 + 1000
        pytest.param(
            "premium",
            {
                "prompt_tokens": 1000,
                "completion_tokens": 100,
                "total_tokens": 1100,
                "prompt_tokens_details": {"cached_tokens": 800},
            },
            "0.002500",
            id="cached-tokens-at-cached-price",
        ),
        # mid has no cached_input price: cached tokens cost the input price. 1000 × 1 + 10 × 4
        pytest.param(
            "standard",
            {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 800}},
            "0.001040",
            id="cached-tokens-without-cached-price",
        ),
        # small: 1000 × 0.028 + 1000 × 0.042 = 28 + 42 exactly (floats would give 28.000000000000004
        # and round up to 71)
        pytest.param(
            "budget", {"prompt_tokens": 1000, "completion_tokens": 1000}, "0.000070", id="exact-decimals"
        ),
        # 7 × 0.028 + 3 × 0.042 = 0.322 µ$, rounded up once to 1
        pytest.param(
            "budget", {"prompt_tokens": 7, "completion_tokens": 3}, "0.000001", id="rounded-up-once"
        ),
        # only a total: all at the dearer price (10): 100 × 10
        pytest.param("premium", {"total_tokens": 100}, "0.001000", id="total-only"),
        # reasoning tokens are part of completion_tokens: 50 × 1 + 300 × 4
        pytest.param(
            "standard",
            {
                "prompt_tokens": 50,
                "completion_tokens": 300,
                "completion_tokens_details": {"reasoning_tokens": 250},
            },
            "0.001250",
            id="reasoning-inside-completion",
        ),
    ],
)
async def test_cost_header_matches_hand_computed_cost(
    make_router, rules_dict, upstream, tier: str, usage: dict[str, Any], expected: str
) -> None:
    getattr(upstream, tier).mock(return_value=upstream.reply(tier, usage=usage))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model=tier)
    assert response.status_code == 200, response.text
    assert response.headers["x-router-tier"] == tier
    assert response.headers["x-router-cost-usd"] == expected
    assert response.json()["usage"] == usage  # the provider's usage is passed through untouched


async def test_no_usage_reported_means_no_cost_header(make_router, rules_dict, upstream) -> None:
    upstream.standard.mock(return_value=upstream.reply("standard", no_usage=True))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="standard")
    assert response.status_code == 200
    assert "x-router-cost-usd" not in response.headers


async def test_anthropic_cache_reads_and_writes_are_priced_from_the_translated_usage(
    make_router, rules_dict, upstream
) -> None:
    """claude at 3 / 15, cached_input 0.3, 5-minute writes at 1.25 × input:
    21 × 3 + 1024 × 0.3 + 188086 × 3 × 1.25 + 393 × 15
    = 63 + 307.2 + 705322.5 + 5895 = 711587.7 µ$ → 711588."""
    upstream.anthropic.mock(return_value=httpx.Response(200, json=CACHED_MESSAGE))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="claude")
    assert response.status_code == 200, response.text
    assert response.headers["x-router-cost-usd"] == "0.711588"
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == 21 + 1024 + 188086
    assert usage["prompt_tokens_details"] == {"cached_tokens": 1024, "cache_write_tokens": 188086}
    status = await router.status()
    assert status["spend"]["by_model"] == {"claude": "0.711588"}


# --- streamed usage -------------------------------------------------------------------------


async def test_stream_final_usage_chunk_carries_cost_usd(make_router, rules_dict, upstream) -> None:
    # big: 5 × 2.5 + 2 × 10 = 32.5 → 33 µ$
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    upstream.premium.mock(return_value=upstream.sse(chunks(["Hel", "lo"], "big-1", usage=usage)))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="premium", stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    payloads = parse_sse(response.text)
    assert payloads[-1] == "[DONE]"
    final = json.loads(payloads[-2])
    assert final["choices"] == []
    assert final["usage"]["cost_usd"] == pytest.approx(33 / 1_000_000, abs=0)
    assert {k: final["usage"][k] for k in usage} == usage
    # Only the usage chunk is priced; content chunks carry no cost.
    assert all("cost_usd" not in (json.loads(p).get("usage") or {}) for p in payloads[:-2])
    # And the upstream was asked for usage.
    sent = json.loads(upstream.premium.calls.last.request.content)
    assert sent["stream_options"]["include_usage"] is True
    status = await router.status()
    assert status["spend"]["total_usd"] == "0.000033"


async def test_stream_without_usage_requested_is_still_priced_and_counted(
    make_router, rules_dict, upstream
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    upstream.premium.mock(return_value=upstream.sse(chunks(["Hi"], "big-1", usage=usage)))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="premium", stream=True)
    assert response.status_code == 200
    payloads = parse_sse(response.text)
    # The client did not ask for usage: it gets no usage chunk ...
    assert all(json.loads(p).get("choices") for p in payloads[:-1])
    # ... but the router asked the provider for it and counted the cost.
    sent = json.loads(upstream.premium.calls.last.request.content)
    assert sent["stream_options"]["include_usage"] is True
    status = await router.status()
    assert status["spend"]["total_usd"] == "0.000033"
    assert status["spend"]["requests"] == 1


async def test_anthropic_stream_usage_chunk_carries_cost_usd(make_router, rules_dict, upstream) -> None:
    # 12 × 3 + 1800 × 0.3 + 14 × 15 = 36 + 540 + 210 = 786 µ$
    upstream.anthropic.mock(return_value=upstream.sse_raw(ANTHROPIC_STREAM))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="claude", stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    payloads = parse_sse(response.text)
    assert payloads[-1] == "[DONE]"
    final = json.loads(payloads[-2])
    assert final["choices"] == []
    assert final["usage"]["prompt_tokens"] == 12 + 1800
    assert final["usage"]["cost_usd"] == pytest.approx(786 / 1_000_000, abs=0)
    assert (await router.status())["spend"]["total_usd"] == "0.000786"


# --- /v1/router/status spend -----------------------------------------------------------------


async def test_status_reports_todays_spend_by_tier_model_rule_and_key(
    make_router, rules_dict, upstream
) -> None:
    # premium (big): 100 × 2.5 + 10 × 10 = 350 µ$; standard (mid): 100 × 1 + 10 × 4 = 140 µ$
    upstream.premium.mock(
        return_value=upstream.reply("premium", usage={"prompt_tokens": 100, "completion_tokens": 10})
    )
    upstream.standard.mock(
        return_value=upstream.reply("standard", usage={"prompt_tokens": 100, "completion_tokens": 10})
    )
    router = make_router(rules_dict())

    sent = [
        (await router.chat("please prove it", key="team-a"), "premium", "0.000350"),  # rule deep
        (await router.chat("hello", key="team-a"), "standard", "0.000140"),  # rule default
        (await router.chat("hello", key="team-b"), "standard", "0.000140"),  # rule default
        (await router.chat("hi", model="premium", key="team-b"), "premium", "0.000350"),  # explicit
        (await router.chat("hi", model="premium", key="team-b"), "premium", "0.000350"),  # explicit
    ]
    for response, tier, cost in sent:
        assert response.status_code == 200, response.text
        assert response.headers["x-router-tier"] == tier
        assert response.headers["x-router-cost-usd"] == cost

    status = await router.status(key="team-a")
    spend = status["spend"]
    assert spend["day"] == "2031-05-20"
    assert spend["requests"] == 5
    assert spend["cache_hits"] == 0
    assert spend["total_usd"] == "0.001330"  # 3 × 350 + 2 × 140
    assert spend["by_tier"] == {"premium": "0.001050", "standard": "0.000280"}
    assert spend["by_model"] == {"big": "0.001050", "mid": "0.000280"}
    assert spend["by_rule"] == {"explicit": "0.000700", "deep": "0.000350", "default": "0.000280"}
    assert spend["by_key"] == {"team-b": "0.000840", "team-a": "0.000490"}
    # Largest spend first.
    assert list(spend["by_rule"]) == ["explicit", "deep", "default"]
    # Key ids only: no secret anywhere in the status body.
    text = json.dumps(status)
    for secret in ("rk-secret-a", "rk-secret-b"):
        assert secret not in text


async def test_status_requires_a_router_key_when_auth_is_on(make_router, rules_dict, upstream) -> None:
    router = make_router(rules_dict())
    response = await router.client.get("/v1/router/status")
    assert response.status_code == 401


async def test_failed_request_costs_nothing(make_router, rules_dict, upstream) -> None:
    """Every candidate of `duo` answers 5xx: 502, no cost header, the request is counted at
    $0, and its budget reservation is released in full."""
    upstream.standard.mock(return_value=httpx.Response(500, json={"error": {"message": "boom"}}))
    upstream.budget.mock(return_value=httpx.Response(503, json={"error": {"message": "down"}}))
    router = make_router(rules_dict(budgets={"daily_usd": 5}))

    ok = await router.chat("hi", model="premium", key="team-a")
    assert ok.status_code == 200
    paid = ok.headers["x-router-cost-usd"]  # 10 × 2.5 + 5 × 10 = 75 µ$
    assert paid == "0.000075"

    failed = await router.chat("hi", model="duo", key="team-a", max_tokens=100)
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["code"] == "upstream_error"
    assert failed.headers["x-router-attempts"] == "4"  # each 5xx retried once on its model
    assert "x-router-cost-usd" not in failed.headers
    assert upstream.standard.call_count == 2
    assert upstream.budget.call_count == 2

    await router.drain()
    spend = (await router.status(key="team-a"))["spend"]
    assert spend["requests"] == 2
    assert spend["total_usd"] == "0.000075"
    assert "duo" not in spend["by_tier"]
    item = await router.budget_item()
    assert item == {"committed": 75, "spent": 75}


async def test_anthropic_one_hour_cache_writes_are_priced_at_twice_the_input_price(
    make_router, rules_dict, upstream
) -> None:
    """BUG: Anthropic bills 1-hour cache writes at 2 × the input price (5-minute ones at
    1.25 ×) and reports the split in `usage.cache_creation`. `translate_usage` drops that
    split and `cost_micro_usd` prices every write at 1.25 ×, so `x-router-cost-usd`, the
    ledger and the hard cap under-count 1-hour writes by 0.75 × input each.
    claude at 3 / 15: 10 × 3 + 1000 × 3 × 2 + 10 × 15 = 30 + 6000 + 150 = 6180 µ$
    (the router says 30 + 3750 + 150 = 3930)."""
    message = {
        **CACHED_MESSAGE,
        "usage": {
            "input_tokens": 10,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
            "output_tokens": 10,
        },
    }
    upstream.anthropic.mock(return_value=httpx.Response(200, json=message))
    router = make_router(rules_dict(), auth=False)
    response = await router.chat(model="claude")
    assert response.status_code == 200, response.text
    assert response.headers["x-router-cost-usd"] == "0.006180"
