"""The budget day and the spend ledger."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tier_router.spend.counters import (
    SpendLedger,
    day_end,
    day_key,
    day_start,
    elapsed_fraction,
    field_name,
    parse_field,
    summarize,
)
from tier_router.store.base import RESERVED_FIELDS, Store, check_value

from tests.support.clock import FakeClock, at
from tests.support.stores import Observing


@pytest.mark.parametrize(
    ("now", "hour", "day"),
    [
        (at(2026, 11, 23), 0, "2026-11-23"),
        (at(2026, 11, 23, 23, 59, 59.9), 0, "2026-11-23"),
        (at(2026, 11, 24), 0, "2026-11-24"),
        (at(2026, 11, 23, 7, 59, 59), 8, "2026-11-22"),
        (at(2026, 11, 23, 8), 8, "2026-11-23"),
        (at(2027, 1, 1, 3), 5, "2026-12-31"),
        (at(2028, 2, 29, 12), 23, "2028-02-28"),
    ],
)
def test_day_key(now: float, hour: int, day: str) -> None:
    assert day_key(now, hour) == day
    assert day_start(day, hour) <= now < day_end(day, hour)


def test_elapsed_fraction() -> None:
    assert elapsed_fraction(at(2026, 11, 23)) == 0
    assert elapsed_fraction(at(2026, 11, 23, 12)) == 0.5
    assert elapsed_fraction(at(2026, 11, 23, 20), 8) == 0.5
    assert elapsed_fraction(at(2026, 11, 23, 6), 8) == pytest.approx(22 / 24)


@pytest.mark.parametrize(
    "name", ["premium", "gpt-4.1", "a.b/c d%", "x:y@z+", "ключ", "pk", "expires_at", "."]
)
def test_field_names_roundtrip_and_are_store_safe(name: str) -> None:
    field = field_name("model", name)
    assert parse_field(field) == ("model", name)
    assert field not in RESERVED_FIELDS
    check_value({field: 1})  # the store accepts it
    assert field.count(".") >= 1
    assert "/" not in field
    assert " " not in field


@given(st.text(min_size=1, max_size=40))
def test_field_names_roundtrip_property(name: str) -> None:
    assert parse_field(field_name("key", name)) == ("key", name)


def test_plain_fields_do_not_parse() -> None:
    assert parse_field("total") is None


def test_summarize_ignores_noise() -> None:
    report = summarize(
        "d", [{"total": 5, "requests": 1, "tier.a": 5, "weird": 3, "other.x": 1, "tier.b": "s"}]
    )
    assert report.total == 5
    assert report.by_tier == {"a": 5}


@pytest.mark.anyio
async def test_record_and_report(store: Store, clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 10)
    ledger = SpendLedger(store, clock=clock)
    await ledger.record(
        cost=1200, tier="premium", model="claude-sonnet-4.5", rule="hard", router_key="team/a"
    )
    await ledger.record(cost=300, tier="budget", model="deepseek-chat", rule="default", router_key="team/a")
    await ledger.record(
        cost=0, tier="budget", model="deepseek-chat", rule="default", router_key="b", cache_hit=True
    )
    await ledger.record(cost=7, tier=None, model="gpt-4.1", rule="explicit", router_key=None)
    report = await ledger.today()
    assert report.day == "2026-11-23"
    assert (report.total, report.requests, report.cache_hits) == (1507, 4, 1)
    assert report.by_tier == {"premium": 1200, "budget": 300}
    assert report.by_model == {"claude-sonnet-4.5": 1200, "deepseek-chat": 300, "gpt-4.1": 7}
    assert report.by_rule == {"hard": 1200, "default": 300, "explicit": 7}
    assert report.by_key == {"team/a": 1500}  # a free (cached) request adds no money fields
    shown = report.as_dict()
    assert shown["total_usd"] == "0.001507"
    assert list(shown["by_model"]) == ["claude-sonnet-4.5", "deepseek-chat", "gpt-4.1"]


@pytest.mark.anyio
async def test_record_is_one_write() -> None:
    from tier_router.store.memory import MemoryStore

    observed = Observing(MemoryStore())
    ledger = SpendLedger(observed)
    await ledger.layouts.pinned(ledger.today_key())  # once per day and process (spend.layout)
    observed.calls.clear()
    await ledger.record(cost=1, tier="t", model="m", rule="r", router_key="k")
    assert observed.calls == {"add": 1}


@pytest.mark.anyio
async def test_days_are_separate_and_expire(store: Store, clock: FakeClock) -> None:
    clock.now = at(2026, 11, 23, 23, 59)
    ledger = SpendLedger(store, clock=clock, retention_days=2)
    await ledger.record(cost=10, tier="t", model="m", rule="r", router_key="k")
    clock.now = at(2026, 11, 24, 0, 1)
    await ledger.record(cost=20, tier="t", model="m", rule="r", router_key="k")
    assert (await ledger.today()).total == 20
    assert (await ledger.report("2026-11-23")).total == 10
    clock.now = at(2026, 11, 26, 0, 0, 1)  # day end (Nov 24 00:00) + 2 days has passed
    assert (await ledger.report("2026-11-23")).total == 0
    assert (await ledger.report("2026-11-24")).total == 20


@pytest.mark.anyio
async def test_explicit_day_wins(store: Store, clock: FakeClock) -> None:
    """A request that started before midnight is charged to the day it reserved on."""
    clock.now = at(2026, 11, 24, 0, 0, 5)
    ledger = SpendLedger(store, clock=clock)
    await ledger.record("2026-11-23", cost=10, tier="t", model="m", rule="r", router_key="k")
    assert (await ledger.report("2026-11-23")).total == 10
    assert (await ledger.today()).total == 0


@pytest.mark.anyio
async def test_sharded_and_concurrent(store: Store, clock: FakeClock) -> None:
    ledger = SpendLedger(store, clock=clock, shards=4)
    async with anyio.create_task_group() as tg:
        for i in range(100):
            tg.start_soon(
                lambda i=i: ledger.record(cost=i, tier="t", model=f"m{i % 3}", rule="r", router_key="k")
            )
    report = await ledger.today()
    assert report.total == sum(range(100))
    assert report.requests == 100
    assert sum(report.by_model.values()) == report.total
    assert len(await store.get_many(ledger.item_keys(ledger.today_key()))) > 1  # writes spread


def test_bad_arguments() -> None:
    from tier_router.store.memory import MemoryStore

    with pytest.raises(ValueError, match="shards"):
        SpendLedger(MemoryStore(), shards=0)
    with pytest.raises(TypeError, match="micro"):
        SpendLedger.deltas(cost=1.5, tier=None, model=None, rule=None, router_key=None)  # type: ignore[arg-type]
