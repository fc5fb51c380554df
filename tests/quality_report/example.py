"""The example state docs/quality-loop.md shows `tier-router quality --days 7` on: a week of
judgements, feedback and ledger requests, written as the router writes them."""

from __future__ import annotations

from typing import Any

from tier_router.quality import counts
from tier_router.quality.report import days_back, read
from tier_router.quality.sample import Verdict
from tier_router.spend.counters import SpendLedger, add_tally
from tier_router.spend.results import Tally
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock, at

TODAY = "2026-12-07"
SCORES = {Verdict.WIN: (0.9, 0.7), Verdict.TIE: (0.8, 0.8), Verdict.LOSS: (0.4, 0.9)}
# (tier, rule, model): wins, ties, losses, saving per judged request (µ$), requests in the week
JUDGED = {
    ("budget", "short-chat", "gemini-2.5-flash-lite"): (170, 46, 24, 1800, 11_800),
    ("budget", "tools-and-json", "gemini-2.5-flash-lite"): (31, 12, 17, 2600, 3_100),
    ("standard", "default", "gpt-4.1-mini"): (52, 25, 13, 900, 4_700),
}
FEEDBACK = {
    ("budget", "short-chat", "gemini-2.5-flash-lite"): (28, 7),
    ("premium", "hard-reasoning", "gpt-4.1"): (6, 0),
}
"""(tier, rule, model): feedback scored 1, scored 0."""
PREMIUM_REQUESTS = 900


async def example_report(days: int = 7) -> dict[str, Any]:
    clock = FakeClock(at(2026, 12, 7, 18))
    store = MemoryStore(clock=clock)
    ledger = SpendLedger(store, clock=clock)
    week = days_back(TODAY, days)
    n = 0
    for (tier, rule, model), (wins, ties, losses, saved, requests) in JUDGED.items():
        dims = {"tier": tier, "rule": rule, "model": model}
        for verdict, count in ((Verdict.WIN, wins), (Verdict.TIE, ties), (Verdict.LOSS, losses)):
            for _ in range(count):
                day = week[n % len(week)]  # spread over the week
                n += 1
                deltas = counts.verdict_deltas(dims, verdict, *SCORES[verdict], saved)
                await store.add(counts.item_key(day), deltas)
        ledger_deltas: dict[str, int] = {}
        for dim, name in dims.items():
            add_tally(ledger_deltas, dim, name, Tally(requests=requests))
        await store.add(ledger.item_keys(TODAY)[0], ledger_deltas)
    for (tier, rule, model), (good, bad) in FEEDBACK.items():
        for score in [1.0] * good + [0.0] * bad:
            deltas = counts.feedback_deltas({"tier": tier, "rule": rule, "model": model}, score)
            await store.add(counts.item_key(TODAY), deltas)
    premium: dict[str, int] = {}
    add_tally(premium, "tier", "premium", Tally(requests=PREMIUM_REQUESTS))
    add_tally(premium, "rule", "hard-reasoning", Tally(requests=PREMIUM_REQUESTS))
    add_tally(premium, "model", "gpt-4.1", Tally(requests=PREMIUM_REQUESTS))
    await store.add(ledger.item_keys(TODAY)[0], premium)
    await store.add(counts.item_key(TODAY), {"judge_failed": 4, "judge_skipped": 12, "judge_cost": 1_384_220})
    return (await read(ledger, days=days, reference="premium", today=TODAY)).as_dict()
