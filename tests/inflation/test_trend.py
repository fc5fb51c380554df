"""The trend per model and rule over the last days (`spend.trend`): per-day figures, the week
over week change, batched reads of the day items (pins, shards), the text table, and
`tier-router status --days N` on a store the ledger wrote."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from tier_router.cli import main
from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.counters import DAY_S, SpendLedger, day_key, days_back
from tier_router.spend.results import RequestResult
from tier_router.spend.trend import read_trend, render, spark
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.clock import FakeClock, at
from tests.support.demo import unjudged_demo
from tests.support.stores import Observing

TODAY = at(2026, 12, 7, 12)


async def answered(
    ledger: SpendLedger, model: str, rule: str, output: int, cost: int, *, prompt: int = 100, cached: int = 0
) -> None:
    request = RequestLine(
        "r",
        tier="t",
        rule=rule,
        model=model,
        outcome=Outcome.OK,
        prompt_tokens=prompt,
        completion_tokens=output,
        cached_tokens=cached or None,
        cache_savings_micro_usd=cached or None,  # 1 µ$ per cached token, for the test
    )
    await ledger.record(
        cost=cost,
        tier="t",
        model=model,
        rule=rule,
        router_key=None,
        result=RequestResult.of(request, cost=cost),
    )


async def two_weeks(store: Store, clock: FakeClock, today: float = TODAY) -> SpendLedger:
    """claude on rule `deep`: the week before last, 2 requests a day of 100 output tokens and
    1,000 µ$ each; the last 7 days, 130 tokens and 1,200 µ$, 40 of 100 input tokens cached.
    gpt (rule `default`) only today; nothing at all three days ago."""
    for back in range(13, -1, -1):
        clock.now = today - back * DAY_S
        ledger = SpendLedger(store, clock=clock)
        if back == 3:
            continue
        for _ in range(2):
            if back >= 7:
                await answered(ledger, "claude", "deep", 100, 1_000)
            else:
                await answered(ledger, "claude", "deep", 130, 1_200, cached=40)
    await answered(ledger, "gpt", "default", 10, 50)
    return ledger


@pytest.mark.anyio
async def test_the_trend_per_day_and_week_over_week(clock: FakeClock) -> None:
    ledger = await two_weeks(MemoryStore(clock=clock), clock)
    data = (await read_trend(ledger, days=4)).as_dict()
    assert data["days"] == ["2026-12-04", "2026-12-05", "2026-12-06", "2026-12-07"]
    assert list(data) == ["days", "model", "rule"]
    assert list(data["model"]) == ["claude", "gpt"]  # dearest first (over the shown days)
    claude = data["model"]["claude"]
    assert claude["week_over_week"] == {"output_tokens_per_request": 0.3, "cost_per_request": 0.2}
    assert [d["requests"] for d in claude["by_day"]] == [0, 2, 2, 2]  # 2026-12-04: three days ago
    quiet, day = claude["by_day"][0], claude["by_day"][-1]
    assert quiet["output_tokens_per_request"] is None
    assert quiet["cost_per_request_usd"] is None
    assert quiet["cached_share"] is None
    assert day == {
        "day": "2026-12-07",
        "requests": 2,
        "metered": 2,
        "input_tokens": 200,
        "output_tokens": 260,
        "cached_tokens": 80,
        "cached_requests": 2,
        "cost_micro_usd": 2_400,
        "savings_micro_usd": 80,
        "input_tokens_per_request": 100.0,
        "output_tokens_per_request": 130.0,
        "cost_per_request_usd": "0.001200",
        "cached_share": 0.4,
        "savings_usd": "0.000080",
    }
    assert (claude["requests"], claude["output_tokens"], claude["cost_micro_usd"]) == (6, 780, 7_200)
    assert data["rule"]["deep"]["week_over_week"] == claude["week_over_week"]
    # gpt has no week before: no change to show
    assert data["model"]["gpt"]["week_over_week"] == {
        "output_tokens_per_request": None,
        "cost_per_request": None,
    }


@pytest.mark.anyio
async def test_a_week_without_tokens_has_a_cost_change_only(clock: FakeClock) -> None:
    """The week before last written by a router that counted no tokens (results only)."""
    store = MemoryStore(clock=clock)
    for back in range(13, -1, -1):
        clock.now = TODAY - back * DAY_S
        ledger = SpendLedger(store, clock=clock)
        if back >= 7:
            day = ledger.today_key()
            await ledger.record_deltas(
                day, {"requests": 1, "model.m": 500, "model_n.m": 1, "rule.r": 500, "rule_n.r": 1}
            )
        else:
            await answered(ledger, "m", "r", 10, 600)
    data = (await read_trend(ledger)).as_dict()
    assert len(data["days"]) == 14
    assert data["model"]["m"]["week_over_week"] == {
        "output_tokens_per_request": None,
        "cost_per_request": 0.2,
    }
    assert data["model"]["m"]["by_day"][0]["output_tokens_per_request"] is None  # no tokens that day
    assert data["model"]["m"]["by_day"][0]["cost_per_request_usd"] == "0.000500"


@pytest.mark.anyio
@pytest.mark.parametrize(("shards", "days", "reads"), [(1, 14, 2), (1, 3, 2), (10, 14, 3), (10, 30, 4)])
async def test_reads_are_batched(clock: FakeClock, shards: int, days: int, reads: int) -> None:
    """One `get_many` for the days' pins, then the days' items in calls of at most 100 keys
    (the 14 days a week-over-week change needs, whatever `days`); shards sum."""
    observed = Observing(MemoryStore(clock=clock))
    clock.now = TODAY
    ledger = SpendLedger(observed, clock=clock, shards=shards)
    for _ in range(12):  # spread over the shards at random
        await answered(ledger, "m", "r", 10, 100)
    observed.calls.clear()
    data = (await read_trend(ledger, days=days)).as_dict()
    assert observed.calls == {"get_many": reads}
    assert data["model"]["m"]["by_day"][-1]["output_tokens"] == 120


@pytest.mark.anyio
@pytest.mark.parametrize("days", [0, 367])
async def test_days_out_of_range(days: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.366"):
        await read_trend(SpendLedger(MemoryStore()), days=days)


@pytest.mark.anyio
async def test_the_text_is_one_compact_table(clock: FakeClock) -> None:
    ledger = await two_weeks(MemoryStore(clock=clock), clock)
    text = render((await read_trend(ledger)).as_dict())
    lines = text.splitlines()
    assert lines[0] == (
        "trend     2026-11-24 .. 2026-12-07 (14 UTC budget days); w/w: the last 7 days over the 7 before"
    )
    assert max(len(line) for line in lines) <= 100
    assert lines[1].split() == [
        "reqs",
        "out/req",
        "$/req",
        "cached",
        "saved",
        "$",
        "out/req",
        "by",
        "day",
        "out",
        "w/w",
        "$",
        "w/w",
    ]
    rows = {" ".join(line.split()[:2]): line.split()[2:] for line in lines[2:]}
    assert list(rows) == ["model claude", "model gpt", "rule deep", "rule default"]
    # 26 requests (none 3 days ago); 14 × 100 + 12 × 130 tokens over 26; 14 × 1,000 + 12 × 1,200 µ$
    # over 26; 480 of 2,600 input tokens cached
    assert rows["model claude"] == [
        "26",
        "113.8",
        "0.001092",
        "18%",
        "0.000480",
        "▆▆▆▆▆▆▆███.███",
        "+30.0%",
        "+20.0%",
    ]
    assert rows["model gpt"] == [
        "1",
        "10.0",
        "0.000050",
        "0%",
        "0.000000",
        "." * 13 + "█",
        "-",
        "-",
    ]
    assert (
        render({"days": ["2026-12-07"], "model": {}, "rule": {}}).splitlines()[1]
        == "  no requests in these days"
    )


def test_spark() -> None:
    assert spark([None, 0, 50, 100]) == ".▁▅█"
    assert spark([0, 0]) == "▁▁"
    assert spark([]) == ""


def test_status_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--days N` shows N days (JSON: every figure; text: the table after the rest), from the
    store the ledger wrote (the two weeks up to now, as the demo router's ledger lays them out)."""
    now = time.time()

    async def write() -> None:
        store = SQLiteStore(tmp_path / "state.db")
        await two_weeks(store, FakeClock(), today=now)
        await store.aclose()

    asyncio.run(write())
    store_url = f"sqlite:///{tmp_path}/state.db"
    demo = str(unjudged_demo())
    assert main(["status", "--rules", demo, "--store", store_url, "--days", "3", "--json"]) == 0
    trend: dict[str, Any] = json.loads(capsys.readouterr().out)["trend"]
    assert trend["days"] == days_back(day_key(now), 3)
    assert trend["model"]["claude"]["week_over_week"]["output_tokens_per_request"] == 0.3
    assert main(["status", "--rules", demo, "--store", store_url]) == 0
    text = capsys.readouterr().out
    first, *_, last = days_back(day_key(now), 14)
    assert f"trend     {first} .. {last} (14 UTC budget days)" in text
    assert "  model claude" in text
    assert main(["status", "--rules", demo, "--store", store_url, "--days", "0"]) == 2
    assert "--days must be 1..366" in capsys.readouterr().err
