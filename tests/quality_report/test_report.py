"""The quality report's arithmetic, on every store: counts written as the judge and feedback
write them (`counts.verdict_deltas` / `feedback_deltas`, one `store.add` each), requests as the
ledger counts them, and the report's rows worked out by hand.

Today, on tier budget / rule short / model small / arm exp/a: 6 wins (served 0.9, reference
0.6, saved 300 µ$), 2 ties (0.7 / 0.7, saved 300), 2 losses (0.2 / 0.8, saved -100: the
reference was cheaper). Tier standard / rule long: 1 loss (saved 50). Feedback on tier
premium / rule default: 1.0 and 0.5. Judging: 2 failed, 1 skipped, 4,321 µ$. The ledger:
40 requests on budget/short, 7 on standard/long, 5 on premium/default.
Yesterday: 2 losses on budget/short (unpriced: no saving), and 10 requests there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from tier_router.quality import counts
from tier_router.quality.report import read, render
from tier_router.quality.sample import Verdict
from tier_router.spend.counters import MAX_DAYS, SpendLedger, days_back
from tier_router.spend.results import RequestResult
from tier_router.store.base import Store, Value

from tests.support.clock import FakeClock
from tests.support.stores import Wrapped

BUDGET = {"tier": "budget", "rule": "short", "model": "small", "arm": "exp/a"}
STANDARD = {"tier": "standard", "rule": "long", "model": "medium"}
PREMIUM = {"tier": "premium", "rule": "default", "model": "large"}


async def judge(
    store: Store, day: str, dims: dict[str, str], verdict: Verdict, s: float, r: float, saved: Any
):
    await store.add(counts.item_key(day), counts.verdict_deltas(dims, verdict, s, r, saved))


async def answered(ledger: SpendLedger, day: str, dims: dict[str, str], n: int) -> None:
    for _ in range(n):
        result = RequestResult(
            cost=10, tier=dims["tier"], rule=dims["rule"], key=None, arm=dims.get("arm"), model=dims["model"]
        )
        await ledger.record(
            day,
            cost=10,
            tier=dims["tier"],
            model=dims["model"],
            rule=dims["rule"],
            router_key=None,
            result=result,
        )


async def write_days(store: Store, ledger: SpendLedger) -> tuple[str, str]:
    today = ledger.today_key()
    [yesterday, _] = days_back(today, 2)
    for _ in range(6):
        await judge(store, today, BUDGET, Verdict.WIN, 0.9, 0.6, saved=300)
    for _ in range(2):
        await judge(store, today, BUDGET, Verdict.TIE, 0.7, 0.7, saved=300)
        await judge(store, today, BUDGET, Verdict.LOSS, 0.2, 0.8, saved=-100)
        await judge(store, yesterday, BUDGET, Verdict.LOSS, 0.1, 0.9, saved=None)
    await judge(store, today, STANDARD, Verdict.LOSS, 0.3, 0.9, saved=50)
    for score in (1.0, 0.5):
        await store.add(counts.item_key(today), counts.feedback_deltas(PREMIUM, score))
    await store.add(counts.item_key(today), {"judge_failed": 2, "judge_skipped": 1, "judge_cost": 4321})
    await answered(ledger, today, BUDGET, 40)
    await answered(ledger, today, STANDARD, 7)
    await answered(ledger, today, PREMIUM, 5)
    await answered(ledger, yesterday, BUDGET, 10)
    return yesterday, today


@pytest.mark.anyio
@pytest.mark.parametrize("shards", [1, 3])
async def test_today_per_tier_rule_model_and_arm(store: Store, clock: FakeClock, shards: int) -> None:
    ledger = SpendLedger(store, clock=clock, shards=shards)
    _, today = await write_days(store, ledger)

    data = (await read(ledger, reference="premium")).as_dict()

    assert data["days"] == [today]
    assert data["reference"] == "premium"
    assert (data["judged"], data["judge_failed"], data["judge_skipped"]) == (11, 2, 1)
    assert (data["judge_cost_micro_usd"], data["judge_cost_usd"]) == (4321, "0.004321")
    budget = data["tier"]["budget"]
    assert {k: budget[k] for k in ("samples", "wins", "ties", "losses", "loss_rate")} == {
        "samples": 10,
        "wins": 6,
        "ties": 2,
        "losses": 2,
        "loss_rate": 0.2,
    }
    assert budget["loss_rate_ci"] == [0.0567, 0.5098]  # Wilson, 2 of 10 (published tables: .057-.510)
    assert budget["not_worse_ci"] == [0.4902, 0.9433]
    assert (budget["score"], budget["reference_score"]) == (0.72, 0.66)  # (6×.9+2×.7+2×.2)/10 ...
    assert budget["saved_per_request_micro_usd"] == 220  # (8×300 − 2×100) / 10
    assert budget["requests"] == 40
    assert budget["saved_estimate_micro_usd"] == 220 * 40
    assert budget["saved_estimate_usd"] == "0.008800"
    assert budget["saved_estimate_from"] == 10
    assert (budget["feedback"], budget["feedback_score"]) == (0, None)
    # the same judgements on the rule, model and arm of those requests
    assert data["rule"]["short"] == budget
    assert data["model"]["small"]["samples"] == 10
    assert data["arm"]["exp/a"]["saved_estimate_micro_usd"] == 220 * 40
    standard = data["tier"]["standard"]
    assert (standard["samples"], standard["losses"], standard["loss_rate_ci"]) == (1, 1, [0.2065, 1.0])
    assert (standard["requests"], standard["saved_estimate_micro_usd"]) == (7, 350)
    # feedback only: no verdict, so no saving estimate
    premium = data["tier"]["premium"]
    assert (premium["samples"], premium["feedback"], premium["feedback_score"]) == (0, 2, 0.75)
    assert premium["loss_rate"] is None
    assert premium["loss_rate_ci"] is None
    assert premium["requests"] == 5
    assert premium["saved_estimate_micro_usd"] is None
    assert premium["saved_estimate_usd"] is None
    assert list(data["tier"]) == ["budget", "standard", "premium"]  # most samples first
    assert data["rule"]["default"]["feedback"] == 2


@pytest.mark.anyio
async def test_days_sum_quality_and_requests(store: Store, clock: FakeClock) -> None:
    ledger = SpendLedger(store, clock=clock)
    yesterday, today = await write_days(store, ledger)

    data = (await read(ledger, days=2)).as_dict()

    assert data["days"] == [yesterday, today]
    budget = data["tier"]["budget"]
    assert (budget["samples"], budget["losses"], budget["requests"]) == (12, 4, 50)
    assert budget["loss_rate_ci"] == [0.1381, 0.6094]  # Wilson, 4 of 12
    assert budget["saved_per_request_micro_usd"] == 183  # 2200 / 12: unpriced judgements save nothing
    assert budget["saved_estimate_micro_usd"] == 183 * 50
    yesterday_only = (await read(ledger, today=yesterday)).as_dict()["tier"]["budget"]
    assert (yesterday_only["samples"], yesterday_only["requests"]) == (2, 10)
    assert yesterday_only["saved_estimate_micro_usd"] == 0


@pytest.mark.anyio
async def test_nothing_judged_is_an_empty_report(store: Store, clock: FakeClock) -> None:
    ledger = SpendLedger(store, clock=clock)
    await answered(ledger, ledger.today_key(), BUDGET, 3)  # traffic, but nothing judged

    data = (await read(ledger)).as_dict()

    assert {dim: data[dim] for dim in counts.DIMENSIONS} == {"tier": {}, "rule": {}, "model": {}, "arm": {}}
    assert (data["judged"], data["judge_cost_usd"]) == (0, "0.000000")
    assert render(data).endswith("nothing judged and no feedback in these days")


class Batches(Wrapped):
    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.sizes: list[int] = []

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        self.sizes.append(len(keys))
        return await super().get_many(keys)


@pytest.mark.anyio
async def test_many_days_are_read_in_batches_of_100_keys(store: Store, clock: FakeClock) -> None:
    """60 days of a 2-shard ledger: 60 quality keys + 60 day pins, then 120 ledger keys, read 100
    at a time."""
    watched = Batches(store)
    ledger = SpendLedger(watched, clock=clock, shards=2)  # type: ignore[arg-type]
    old = days_back(ledger.today_key(), 60)[0]
    await judge(store, old, BUDGET, Verdict.LOSS, 0.0, 1.0, saved=10)

    data = (await read(ledger, days=60)).as_dict()

    assert watched.sizes == [100, 20, 100, 20]
    assert data["days"][0] == old
    assert len(data["days"]) == 60
    assert data["tier"]["budget"]["losses"] == 1


def test_days_are_checked() -> None:
    assert days_back("2026-03-01", 3) == ["2026-02-27", "2026-02-28", "2026-03-01"]
    for bad in (0, MAX_DAYS + 1):
        with pytest.raises(ValueError, match="days must be"):
            days_back("2026-03-01", bad)


@pytest.mark.anyio
async def test_text_table(store: Store, clock: FakeClock) -> None:
    ledger = SpendLedger(store, clock=clock)
    await write_days(store, ledger)

    text = render((await read(ledger, reference="premium")).as_dict())
    lines = text.splitlines()

    assert lines[0].startswith("quality   ")
    assert lines[0].endswith("reference tier premium")
    assert lines[1] == "judged    11 (2 failed, 1 skipped), judging cost $0.004321"
    head = lines.index(next(line for line in lines if line.startswith("by tier")))
    columns = "judged win/tie/loss loss rate (95% CI) score ref. fb fb avg requests saved est. $"
    assert lines[head].split()[2:] == columns.split()
    rows = {line.split()[0]: line.split()[1:] for line in lines[head + 1 : head + 4]}
    assert rows["budget"] == ["10", "6/2/2", "20.0%", "[6%-51%]", "0.72", "0.66", "0", "-", "40", "0.008800"]
    assert rows["premium"] == ["0", "-", "-", "-", "-", "2", "0.75", "5", "-"]
    assert any(line.startswith("by rule") for line in lines)
    assert any(line.startswith("by arm") for line in lines)
    assert max(len(line) for line in lines) <= 120
