"""The two weeks docs/spend.md ("Tokens per request over time") shows: the demo's models `large`
(rule `hard-question`) and `small` (rule `default`), priced as the rules file would price them,
written through the ledger day by day up to 2026-12-07 12:00 UTC. `large` got wordier a week
ago (310 → 400 output tokens per answer); `small` did not. Nothing was served on 2026-12-02."""

from __future__ import annotations

from typing import Any

from tier_router.request_line import Outcome, RequestLine
from tier_router.schema import Price
from tier_router.spend.counters import DAY_S, SpendLedger
from tier_router.spend.pricing import cache_savings_micro_usd, cost_micro_usd
from tier_router.spend.results import RequestResult
from tier_router.spend.trend import Trend, read_trend
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at

TODAY = at(2026, 12, 7, 12)
LARGE = Price(input=3.0, cached_input=0.3, output=15.0)
SMALL = Price(input=0.15, output=0.6)


def usage(prompt: int, output: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


async def answer(ledger: SpendLedger, model: str, rule: str, price: Price, used: dict[str, Any]) -> None:
    cost = cost_micro_usd(price, used)
    saved = cache_savings_micro_usd(price, used)
    line = RequestLine(
        "r",
        tier="premium" if model == "large" else "budget",
        rule=rule,
        model=model,
        outcome=Outcome.OK,
        prompt_tokens=used["prompt_tokens"],
        completion_tokens=used["completion_tokens"],
        cached_tokens=used["prompt_tokens_details"]["cached_tokens"] or None,
        cache_savings_micro_usd=saved or None,
    )
    await ledger.record(
        cost=cost,
        tier=line.tier,
        model=model,
        rule=rule,
        router_key=None,
        result=RequestResult.of(line, cost=cost),
    )


async def example_trend(days: int = 14) -> Trend:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for back in range(13, -1, -1):
        if back == 5:
            continue
        clock.now = TODAY - back * DAY_S
        ledger = SpendLedger(store, clock=clock)
        wordy = back < 7
        for i in range(4):  # the warm prefix is read from the cache on 3 of 4 turns
            await answer(
                ledger, "large", "hard-question", LARGE, usage(2_400, 400 if wordy else 310, 1_800 * (i > 0))
            )
        for _ in range(12):
            await answer(ledger, "small", "default", SMALL, usage(180, 95))
    clock.now = TODAY
    return await read_trend(SpendLedger(store, clock=clock), days=days)
