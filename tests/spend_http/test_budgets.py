"""Daily budgets through the HTTP API: pacing downgrades and the hard cap under concurrency.

The fake clock stands at noon UTC, so half of the budget day has passed: with
`daily_usd: 10` the pace allowance is $5, and "ratio" below means today's settled spend
divided by that allowance. With `slack: 0.1`, low priority moves one tier down above
ratio 1.1, normal above 1.2, high never.
"""

from __future__ import annotations

import asyncio
import json
import math
from decimal import Decimal
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

PACED = {"daily_usd": 10, "pacing": {"slack": 0.1}}
ALLOWANCE = 5_000_000  # µ$: $10 × 0.5 of the day


def micro(header: str) -> int:
    """An `x-router-cost-usd` value ("0.000246") in micro-dollars, exactly."""
    return int(Decimal(header) * 1_000_000)


def served_tier(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.headers["x-router-tier"]


# --- pacing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        # ratio → tier served to each priority when asking for premium
        (0.5, {"low": "premium", "normal": "premium", "high": "premium"}),
        (1.10, {"low": "premium", "normal": "premium", "high": "premium"}),  # not *above* 1.1
        (1.15, {"low": "standard", "normal": "premium", "high": "premium"}),
        (1.20, {"low": "standard", "normal": "premium", "high": "premium"}),  # not *above* 1.2
        (1.25, {"low": "standard", "normal": "standard", "high": "premium"}),
        (1.90, {"low": "standard", "normal": "standard", "high": "premium"}),
    ],
)
async def test_pacing_downgrades_by_priority(
    make_router, rules_dict, upstream, ratio: float, expected: dict[str, str]
) -> None:
    router = make_router(rules_dict(budgets=PACED))
    for priority, tier in expected.items():
        await router.set_spent(round(ALLOWANCE * ratio))  # (each request settles a little more)
        before = {t: getattr(upstream, t).call_count for t in ("premium", "standard", "budget")}
        response = await router.chat(model="premium", key="team-a", headers={"x-priority": priority})
        assert served_tier(response) == tier, (priority, ratio)
        assert response.headers["x-router-priority"] == priority
        # The tier's model is the one that was actually called, and only it.
        assert getattr(upstream, tier).call_count == before[tier] + 1
        assert sum(getattr(upstream, t).call_count for t in before) == sum(before.values()) + 1
        if tier == "premium":
            assert "x-router-downgraded-from" not in response.headers
            assert response.headers["x-router-model"] == "big"
        else:
            assert response.headers["x-router-downgraded-from"] == "premium"
            assert response.headers["x-router-model"] == "mid"
            reason = response.headers["x-router-downgrade-reason"]
            assert "ahead of pace" in reason
            assert f"({priority} priority)" in reason


async def test_pacing_moves_one_step_only(make_router, rules_dict, upstream) -> None:
    """Far ahead of pace, premium goes to standard (not budget); standard goes to budget."""
    router = make_router(rules_dict(budgets=PACED))
    await router.set_spent(round(ALLOWANCE * 1.9))
    low = {"x-priority": "low"}
    premium = await router.chat(model="premium", key="team-a", headers=low)
    standard = await router.chat(model="standard", key="team-a", headers=low)
    budget = await router.chat(model="budget", key="team-a", headers=low)
    assert (served_tier(premium), premium.headers["x-router-downgraded-from"]) == ("standard", "premium")
    assert (served_tier(standard), standard.headers["x-router-downgraded-from"]) == ("budget", "standard")
    assert served_tier(budget) == "budget"
    assert "x-router-downgraded-from" not in budget.headers
    assert upstream.premium.call_count == 0


async def test_pacing_sees_spend_settled_by_earlier_requests(make_router, rules_dict, upstream) -> None:
    """No store writes by the test: high-priority premium requests settle $5.75 and then
    $0.50 of (faked) usage; pacing reacts to each, with the production 1 s view TTL."""
    router = make_router(rules_dict(budgets=PACED), pacing_ttl_s=1.0)
    low, normal, high = ({"x-priority": p} for p in ("low", "normal", "high"))
    costs: list[int] = []

    async def send(headers: dict[str, str], **fields: Any) -> str:
        response = await router.chat(model="premium", key="team-a", headers=headers, **fields)
        costs.append(micro(response.headers["x-router-cost-usd"]))
        return served_tier(response)

    # Before any spend: nothing is downgraded.
    assert await send(low) == "premium"

    # $5.75 at big's output price of $10/1M: 575,000 completion tokens.
    upstream.premium.mock(
        return_value=upstream.reply("premium", usage={"prompt_tokens": 0, "completion_tokens": 575_000})
    )
    assert await send(high, max_tokens=600_000) == "premium"
    assert costs[-1] == 5_750_000
    assert 1.15 <= sum(costs) / ALLOWANCE < 1.2

    upstream.premium.mock(return_value=upstream.reply("premium"))
    assert await send(low) == "standard"
    assert await send(normal) == "premium"

    # Another $0.50 puts spend past 1.2 × pace.
    upstream.premium.mock(
        return_value=upstream.reply("premium", usage={"prompt_tokens": 0, "completion_tokens": 50_000})
    )
    assert await send(high, max_tokens=60_000) == "premium"
    assert 1.25 <= sum(costs) / ALLOWANCE < 1.3

    upstream.premium.mock(return_value=upstream.reply("premium"))
    assert await send(normal) == "standard"
    assert await send(high) == "premium"

    await router.drain()
    item = await router.budget_item()
    assert item == {"committed": sum(costs), "spent": sum(costs)}
    status = await router.status(key="team-a")
    assert status["budgets"]["global"]["spent_usd"] == f"{sum(costs) / 1e6:.6f}"
    assert status["budgets"]["global"]["pace_usd"] == "5.000000"


async def test_pacing_has_nothing_to_do_without_a_cheaper_tier(make_router, rules_dict, upstream) -> None:
    """`duo` is not in the downgrade map: even far ahead of pace it is served as asked."""
    router = make_router(rules_dict(budgets=PACED))
    await router.set_spent(round(ALLOWANCE * 1.9))
    response = await router.chat(model="duo", key="team-a", headers={"x-priority": "low"})
    assert served_tier(response) == "duo"
    assert "x-router-downgraded-from" not in response.headers


# --- the hard cap under concurrency ------------------------------------------------------

# One model `main` at $1 / $4 per 1M tokens. Each request: the input bound of
# {"messages": [{"role": "user", "content": "Say hi"}]} is 74 tokens (spend/reservation.py:
# 50 bytes of JSON + 8 per message + 16 per request), × 1.5 reservation margin = 111; max_tokens 100.
#   worst case reserved W = 111 × 1 + 100 × 4 = 511 µ$
#   actual cost         A = 6 × 1 + 60 × 4 = 246 µ$   (the fixed usage every answer reports)
WORST = 511
ACTUAL = 246
FITS = 50
CAP = FITS * WORST  # 25,550 µ$ = $0.02555
TOTAL_REQUESTS = 200
CONCURRENCY = 16
# The documented guarantee (spend/budget.py): a reservation is admitted only while
# committed (settled actuals + outstanding reservations) stays <= cap. Hence:
# - upper bound: every admitted request settles A <= W, so n_ok × A <= cap;
# - lower bound: a refusal means settled × A + (other in-flight, <= CONCURRENCY-1) × W + W > cap,
#   so by the last refusal more than (cap - CONCURRENCY × W) / A requests had settled.
MAX_OK = CAP // ACTUAL  # 103
MIN_OK = math.floor((CAP - CONCURRENCY * WORST) / ACTUAL) + 1  # 71


def capped_rules(rules_dict: Any, **budgets: Any) -> dict[str, Any]:
    # Pacing off unless a test asks for it: these tests are about the cap, and "everyday" has
    # a cheaper tier, so pacing (derived from prices) would move requests there.
    pacing = budgets.pop("pacing", {"enabled": False})
    raw = rules_dict(budgets={"daily_usd": CAP / 1_000_000, "pacing": pacing, **budgets})
    raw["providers"]["p-main"] = {
        "kind": "openai",
        "base_url": "https://main.test/v1",
        "api_key_env": "BUDGET_KEY",
    }
    raw["models"]["main"] = {"provider": "p-main", "id": "main-1", "price": {"input": 1.0, "output": 4.0}}
    raw["tiers"]["everyday"] = ["main"]
    return raw


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_hard_cap_holds_under_concurrency(make_router, rules_dict, upstream, store: str) -> None:
    calls = inflight = most_inflight = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal calls, inflight, most_inflight
        calls += 1
        inflight += 1
        most_inflight = max(most_inflight, inflight)
        await asyncio.sleep(0.002 * (1 + calls % 3))  # hold the reservation a while; vary settle order
        inflight -= 1
        return upstream.reply("budget", usage={"prompt_tokens": 6, "completion_tokens": 60})

    upstream.mock.post("https://main.test/v1/chat/completions").mock(side_effect=answer)
    router = make_router(capped_rules(rules_dict), store=store)
    assert router.gateway.spend.guard.config.daily_micro() == CAP

    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> httpx.Response:
        async with gate:
            return await router.chat(model="everyday", key="team-a" if i % 2 else "team-b", max_tokens=100)

    responses = await asyncio.gather(*(one(i) for i in range(TOTAL_REQUESTS)))
    await router.drain()

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    for r in refused:
        assert r.status_code == 429, r.text
        error = r.json()["error"]
        assert (error["type"], error["code"]) == ("insufficient_quota", "budget_exceeded")
        assert r.headers["x-should-retry"] == "false"
        assert int(r.headers["retry-after"]) == 12 * 3600  # until the budget day ends (noon → midnight)
    costs = [micro(r.headers["x-router-cost-usd"]) for r in ok]
    assert set(costs) == {ACTUAL}
    assert MIN_OK <= len(ok) <= MAX_OK, len(ok)
    assert refused, "the cap never refused anything: the test is not exercising it"
    assert calls == len(ok)  # refused requests never reached the provider
    assert most_inflight >= 4  # the requests really overlapped at the provider (not serialized)
    total = sum(costs)
    assert total <= CAP
    item = await router.budget_item()
    assert item == {"committed": total, "spent": total}  # no reservation left behind
    spend = (await router.status(key="team-a"))["spend"]
    assert spend["total_usd"] == f"{total / 1e6:.6f}"
    assert spend["requests"] == len(ok)  # refused requests are not counted as spend


async def test_over_the_cap_the_on_cap_tier_serves_until_it_is_full_too(
    make_router, rules_dict, upstream
) -> None:
    """`on_cap: tier:budget`. Per request ("Say hi", max_tokens 100; 111 inflated input tokens,
    and the provider reports 111 prompt tokens, so each request costs its reservation):
    premium (big)  reserves and costs 111 × 2.5 + 100 × 10 = 1277.5 → 1278;
    budget (small) reserves and costs 111 × 0.028 + 100 × 0.042 = 7.308 → 8.
    Cap 2588 µ$: two premium (committed 2556), then four on budget (2564 .. 2588), then 429."""
    upstream.premium.mock(
        return_value=upstream.reply("premium", usage={"prompt_tokens": 111, "completion_tokens": 100})
    )
    upstream.budget.mock(
        return_value=upstream.reply("budget", usage={"prompt_tokens": 111, "completion_tokens": 100})
    )
    router = make_router(
        rules_dict(budgets={"daily_usd": 0.002588, "on_cap": "tier:budget", "pacing": {"enabled": False}})
    )

    served = []
    for _ in range(6):
        response = await router.chat(model="premium", key="team-a", max_tokens=100)
        served.append(
            (
                served_tier(response),
                response.headers.get("x-router-downgraded-from"),
                response.headers["x-router-cost-usd"],
            )
        )
    assert served == [
        ("premium", None, "0.001278"),
        ("premium", None, "0.001278"),
        *[("budget", "premium", "0.000008")] * 4,
    ]
    assert upstream.premium.call_count == 2
    assert upstream.budget.call_count == 4

    # Now the budget tier is full as well: premium and budget requests are refused.
    for model in ("premium", "budget"):
        refused = await router.chat(model=model, key="team-a", max_tokens=100)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert refused.headers["x-should-retry"] == "false"
    assert upstream.premium.call_count == 2
    assert upstream.budget.call_count == 4

    await router.drain()
    assert await router.budget_item() == {"committed": 2588, "spent": 2588}
    spend = (await router.status(key="team-a"))["spend"]
    assert spend["by_tier"] == {"premium": "0.002556", "budget": "0.000032"}


async def test_cap_downgrade_header_reason(make_router, rules_dict, upstream) -> None:
    router = make_router(
        rules_dict(budgets={"daily_usd": 0.00205, "on_cap": "tier:budget", "pacing": {"enabled": False}})
    )
    await router.set_spent(2040)
    response = await router.chat(model="premium", key="team-a", max_tokens=100)
    assert served_tier(response) == "budget"
    assert response.headers["x-router-downgraded-from"] == "premium"
    assert response.headers["x-router-downgrade-reason"] == "daily budget cap reached"
    assert response.headers["x-router-model"] == "small"


async def test_per_key_cap_refuses_one_key_only(make_router, rules_dict, upstream) -> None:
    """`key_daily_usd: {team-b: 0.00062}`: team-b hits its own cap; team-a is unaffected.
    mid, "Say hi" with max_tokens 100: reserves 111 × 1 + 100 × 4 = 511 µ$, costs 10 × 1 + 5 × 4
    = 30. After n settled: 30n + 511 <= 620 holds for n <= 3, so the 5th request is refused."""
    router = make_router(rules_dict(budgets={"daily_usd": 10, "key_daily_usd": {"team-b": 0.00062}}))
    statuses = [(await router.chat(model="standard", key="team-b", max_tokens=100)) for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 200, 429]
    error = statuses[-1].json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "router key 'team-b'" in error["message"]
    for _ in range(3):
        assert (await router.chat(model="standard", key="team-a", max_tokens=100)).status_code == 200
    await router.drain()
    status = await router.status(key="team-a")
    assert status["budgets"]["keys"]["team-b"]["committed_usd"] == "0.000120"
    assert status["budgets"]["global"]["committed_usd"] == "0.000210"
    assert status["spend"]["by_key"] == {"team-b": "0.000120", "team-a": "0.000090"}


def _openai_stream(model: str, usage: dict[str, int] | None) -> httpx.Response:
    chunks: list[dict[str, Any]] = [
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
    if usage is not None:
        chunks.append(
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_requests_settle_their_actual_cost(
    make_router, rules_dict, upstream, include_usage: bool
) -> None:
    """A stream reserves the worst case (9 × 1 + 100 × 4 = 409 µ$ on mid) and settles what the
    usage chunk says (10 × 1 + 5 × 4 = 30 µ$), whether or not the client asked for usage."""
    upstream.standard.mock(
        return_value=_openai_stream(
            "mid-1", {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        )
    )
    router = make_router(rules_dict(budgets={"daily_usd": 1}))
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    response = await router.chat(model="standard", key="team-a", stream=True, max_tokens=100, **options)
    assert response.status_code == 200
    assert response.text.endswith("data: [DONE]\n\n")
    await router.drain()
    assert await router.budget_item() == {"committed": 30, "spent": 30}
    assert (await router.status(key="team-a"))["spend"]["by_key"] == {"team-a": "0.000030"}


async def test_stream_without_usage_is_charged_its_reservation(make_router, rules_dict, upstream) -> None:
    """No usage from the provider: the cost is unknown, so the reservation is charged in
    full (the conservative choice the guard documents): 511 µ$ for the answer and 661 µ$ for
    the one mid-stream recovery a stream may take (the prompt again plus up to 100 tokens of
    prefill: 1.5 × 100 more input tokens at 1 µ$)."""
    upstream.standard.mock(return_value=_openai_stream("mid-1", None))
    router = make_router(rules_dict(budgets={"daily_usd": 1}))
    response = await router.chat(model="standard", key="team-a", stream=True, max_tokens=100)
    assert response.status_code == 200
    await router.drain()
    assert await router.budget_item() == {"committed": 511 + 661, "spent": 511 + 661}


async def test_cache_hits_are_served_past_the_cap(make_router, rules_dict, upstream) -> None:
    """The cache is looked up before the cap is checked: a cached answer costs nothing, so
    it is still served once the budget is exhausted; a miss is refused."""
    budgets = {"daily_usd": 0.001, "pacing": {"enabled": False}}  # (pacing would move it to another tier)
    router = make_router(rules_dict(budgets=budgets, cache={"enabled": True}))
    assert (
        await router.chat(model="standard", key="team-a", temperature=0, max_tokens=100)
    ).status_code == 200
    await router.set_spent(1000)  # the day's budget is gone
    hit = await router.chat(model="standard", key="team-a", temperature=0, max_tokens=100)
    assert hit.status_code == 200
    assert hit.headers["x-router-cache"] == "hit"
    miss = await router.chat("something else", model="standard", key="team-a", temperature=0, max_tokens=100)
    assert miss.status_code == 429
    assert miss.json()["error"]["code"] == "budget_exceeded"
    assert upstream.standard.call_count == 1
