"""The per-process baseline of `OutputTokensVsLastWeek`: each model's output tokens per request
over days D-13..D-7, loaded once per budget day in the background, never awaited by the line
that asks; a failed load means no metric that day, logged once. And the EMF block it feeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import pytest
from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.baseline import Baseline, previous_week
from tier_router.spend.counters import DAY_S, SpendLedger
from tier_router.spend.results import RequestResult
from tier_router.store.base import Store, StoreUnavailable
from tier_router.store.memory import MemoryStore
from tier_router.telemetry import INFLATION, AccessLog, add_emf

from tests.support.clock import FakeClock, at
from tests.support.stores import Observing

TODAY = at(2026, 12, 7, 12)


async def answered(
    store: Store, clock: FakeClock, back: int, model: str, output: int, times: int = 1
) -> None:
    """`times` answers of `model` with `output` tokens, `back` days before TODAY."""
    clock.now = TODAY - back * DAY_S
    ledger = SpendLedger(store, clock=clock)
    request = RequestLine(
        "r", model=model, rule="r", outcome=Outcome.OK, prompt_tokens=9, completion_tokens=output
    )
    for _ in range(times):
        await ledger.record(
            cost=1, tier="t", model=model, rule="r", router_key=None, result=RequestResult.of(request, cost=1)
        )
    clock.now = TODAY


@pytest.mark.anyio
async def test_the_week_before_last_and_nothing_else(clock: FakeClock) -> None:
    """Days D-13..D-7 only: D-14 (too old) and D-6..D (this week) do not count."""
    store = MemoryStore(clock=clock)
    await answered(store, clock, 14, "m", 1_000, 10)
    for back, output in zip(range(13, 6, -1), (10, 20, 30, 40, 50, 60, 70), strict=True):
        await answered(store, clock, back, "m", output, 2)  # 2 × (10 + ... + 70) = 560 over 14
    await answered(store, clock, 6, "m", 1_000, 10)
    await answered(store, clock, 0, "m", 1_000, 10)
    await answered(store, clock, 9, "few", 50, 9)  # fewer than 10 requests: no baseline
    await answered(store, clock, 9, "enough", 50, 10)
    ledger = SpendLedger(store, clock=clock)
    assert await previous_week(ledger, ledger.today_key()) == {"m": 40.0, "enough": 50.0}
    assert await previous_week(ledger, ledger.today_key(), min_requests=1) == {
        "m": 40.0,
        "few": 50.0,
        "enough": 50.0,
    }


@pytest.mark.anyio
async def test_an_embedding_model_without_output_has_no_baseline(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await answered(store, clock, 8, "embed", 0, 20)
    ledger = SpendLedger(store, clock=clock)
    assert await previous_week(ledger, ledger.today_key()) == {}


class Started:
    """A `start` that keeps the loads for the test to run (or not)."""

    def __init__(self) -> None:
        self.loads: list[Awaitable[None]] = []

    def __call__(self, work: Awaitable[None]) -> None:
        self.loads.append(work)

    async def run(self) -> None:
        loads, self.loads = self.loads, []
        for work in loads:
            await work


@pytest.mark.anyio
async def test_loaded_once_a_budget_day_and_never_awaited(clock: FakeClock) -> None:
    store = Observing(MemoryStore(clock=clock))
    await answered(store, clock, 10, "m", 20, 10)
    started = Started()
    baseline = Baseline(SpendLedger(store, clock=clock), start=started)
    store.calls.clear()
    assert baseline.ratio("m", 30) is None  # the first line of the day starts the load, and goes on
    assert baseline.ratio("m", 30) is None
    assert len(started.loads) == 1
    assert store.calls == {}  # nothing read on the line's path
    await started.run()
    assert store.calls == {"get_many": 2}  # the week's pins, then its items
    assert baseline.ratio("m", 30) == 1.5
    assert baseline.ratio("m", 7) == 0.35
    assert baseline.ratio("other", 30) is None
    assert started.loads == []  # loaded for today: no more loads
    clock.advance(DAY_S)  # a new budget day: one new load; yesterday's baseline serves meanwhile
    assert baseline.ratio("m", 30) == 1.5
    assert len(started.loads) == 1
    await started.run()
    assert baseline.ratio("m", 30) == 1.5  # D-10 is D-11 now: still in the window


@pytest.mark.anyio
async def test_a_failed_load_means_no_metric_that_day_logged_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Down(MemoryStore):
        async def _get_many(self, keys: list[str]) -> dict[str, Any]:
            raise StoreUnavailable("the table is away")

    store = MemoryStore(clock=clock)
    await answered(store, clock, 10, "m", 20, 10)
    started = Started()
    baseline = Baseline(SpendLedger(store, clock=clock), start=started)
    baseline.ratio("m", 1)
    await started.run()
    assert baseline.ratio("m", 40) == 2.0
    clock.advance(DAY_S)
    baseline.ledger = SpendLedger(Down(clock=clock), clock=clock)
    with caplog.at_level(logging.WARNING, logger="tier_router"):
        assert baseline.ratio("m", 40) == 2.0  # until today's load says otherwise
        await started.run()
        for _ in range(5):
            assert baseline.ratio("m", 40) is None
    assert started.loads == []  # not retried on every line
    warnings = [r for r in caplog.records if "token baseline" in r.getMessage()]
    assert len(warnings) == 1
    assert "the table is away" in warnings[0].getMessage()


def test_outside_an_event_loop_nothing_is_started(clock: FakeClock) -> None:
    started = Started()
    baseline = Baseline(SpendLedger(MemoryStore(clock=clock), clock=clock), start=started)
    assert baseline.ratio("m", 10) is None
    assert started.loads == []
    assert baseline.day is None  # the next call from a loop starts the load


@pytest.mark.anyio
async def test_the_default_start_runs_in_the_background(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    await answered(store, clock, 10, "m", 20, 10)
    baseline = Baseline(SpendLedger(store, clock=clock))
    assert baseline.ratio("m", 30) is None
    for _ in range(100):
        await asyncio.sleep(0)
        if baseline.per_request:
            break
    assert baseline.ratio("m", 30) == 1.5


class Fixed:
    def __init__(self, **per_request: float) -> None:
        self.per_request = per_request
        self.asked: list[tuple[str, int]] = []

    def ratio(self, model: str, output_tokens: int) -> float | None:
        self.asked.append((model, output_tokens))
        base = self.per_request.get(model)
        return round(output_tokens / base, 4) if base else None


def record(**fields: Any) -> dict[str, Any]:
    base = {"event": "request", "status": 200, "outcome": "ok", "tier": "t", "model": "m", "provider": "p"}
    return {**base, **fields}


def test_the_emf_block_carries_the_ratio_of_answered_requests_only() -> None:
    baseline = Fixed(m=20.0)
    line = record(prompt_tokens=100, completion_tokens=30, cached_tokens=60, cache_savings_micro_usd=81)
    add_emf(line, 0.0, baseline)
    assert (line["InputTokens"], line["OutputTokens"], line["CachedTokens"], line["CacheSavings"]) == (
        100,
        30,
        60,
        81,
    )
    assert line["OutputTokensVsLastWeek"] == 1.5
    assert line["_aws"]["CloudWatchMetrics"][-1] == INFLATION
    for odd in (
        record(outcome="cache_hit"),  # no usage
        record(outcome="client_gone", completion_tokens=3),  # not answered in full
        record(completion_tokens=None),
        record(model=None, completion_tokens=3),
        record(model="unknown", completion_tokens=3),  # no baseline for it
    ):
        add_emf(odd, 0.0, baseline)
        assert "OutputTokensVsLastWeek" not in odd
        assert INFLATION not in odd["_aws"]["CloudWatchMetrics"]
        assert (odd["InputTokens"], odd["CachedTokens"], odd["CacheSavings"]) == (0, 0, 0)
    assert baseline.asked == [("m", 30), ("unknown", 3)]
    plain = record(completion_tokens=30)
    add_emf(plain, 0.0)  # no baseline at all (EMF without one)
    assert "OutputTokensVsLastWeek" not in plain


def test_the_access_log_asks_its_baseline_only_with_emf() -> None:
    import io

    for emf in (False, True):
        out, baseline = io.StringIO(), Fixed(m=10.0)
        log = AccessLog(out, emf=emf)
        log.baseline = baseline
        log.write(record(completion_tokens=5))
        assert ('"OutputTokensVsLastWeek":0.5' in out.getvalue()) is emf
        assert bool(baseline.asked) is emf
