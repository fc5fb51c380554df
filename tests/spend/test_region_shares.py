"""`budgets.region_shares`: each region enforces its share of every cap, so routers in several
regions (their own tables, or one shared table in per-region namespaces) never pass a cap
together. docs/regions.md ("Budgets") states the arithmetic; this is it, and the guard on it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError
from tier_router.schema import BudgetConfig
from tier_router.spend.budget import BudgetGuard, CapReached, Reservation
from tier_router.store.memory import MemoryStore
from tier_router.store.regional import RegionalStore

from tests.support.clock import FakeClock, at

pytestmark = pytest.mark.anyio

USD = 1_000_000
SHARES = {"us-east-1": 0.5, "eu-west-1": 0.3, "ap-northeast-1": 0.2}


def config(**extra: Any) -> BudgetConfig:
    return BudgetConfig(daily_usd=300, per_key_daily_usd=10, region_shares=SHARES, **extra)


def test_each_region_gets_its_share_of_every_cap() -> None:
    caps = {region: config().for_region(region) for region in SHARES}
    assert {r: c.daily_micro() for r, c in caps.items()} == {
        "us-east-1": 150 * USD,
        "eu-west-1": 90 * USD,
        "ap-northeast-1": 60 * USD,
    }
    assert {r: c.key_daily_micro("team-a") for r, c in caps.items()} == {
        "us-east-1": 5 * USD,
        "eu-west-1": 3 * USD,
        "ap-northeast-1": 2 * USD,
    }
    assert sum(c.daily_micro() or 0 for c in caps.values()) == config().daily_micro() == 300 * USD


@pytest.mark.parametrize(
    ("cap_usd", "shares"),
    [
        (300, {"us-east-1": 0.5, "eu-west-1": 0.3, "ap-northeast-1": 0.2}),
        (0.000007, {"us-east-1": 0.5, "eu-west-1": 0.5}),  # 7 µ$: 3 + 3, never 4 + 4
        (1_000_000, {"us-east-1": 0.333333, "eu-west-1": 0.333333, "ap-northeast-1": 0.333334}),
        (99.99, {"us-east-1": 0.1, "eu-west-1": 0.2, "ap-northeast-1": 0.7}),  # 0.1 + 0.2 + 0.7 is 1
        (10, {"us-east-1": 0.25, "eu-west-1": 0.25}),  # shares below 1: headroom left unused
    ],
)
def test_the_regions_caps_never_add_up_to_more_than_the_cap(cap_usd: float, shares: dict[str, float]) -> None:
    budgets = BudgetConfig(daily_usd=cap_usd, key_daily_usd={"k": cap_usd}, region_shares=shares)
    cap = budgets.daily_micro() or 0
    parts = [budgets.for_region(region) for region in shares]
    assert sum(p.daily_micro() or 0 for p in parts) <= cap
    assert sum(p.key_daily_micro("k") or 0 for p in parts) <= cap
    for region, part in zip(shares, parts, strict=True):  # rounded down by less than a micro-dollar
        assert cap * Decimal(str(shares[region])) - (part.daily_micro() or 0) < 1


def test_shares_adding_up_to_more_than_one_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"add up to 1\.1"):
        BudgetConfig(daily_usd=1, region_shares={"us-east-1": 0.7, "eu-west-1": 0.4})


@pytest.mark.parametrize(
    "shares", [{"us-east-1": 0}, {"us-east-1": 1.5}, {"Europe": 0.5}, {"us-east-1": 0.1 + 0.2}]
)
def test_a_share_is_a_region_and_an_exact_fraction(shares: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        BudgetConfig(daily_usd=1, region_shares=shares)


def test_a_region_without_a_share_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"this region \(sa-east-1\) no share"):
        config().for_region("sa-east-1")


def test_without_shares_or_a_region_the_cap_is_whole() -> None:
    assert BudgetConfig(daily_usd=300).for_region("eu-west-1").daily_micro() == 300 * USD
    assert config().for_region(None).daily_micro() == 300 * USD


def test_a_copy_keeps_the_share() -> None:
    """The router keys file's caps are merged into a copy (`SpendControls.apply_keys`)."""
    merged = config().for_region("eu-west-1").model_copy(update={"key_daily_usd": {"team-b": 1}})
    assert merged.key_daily_micro("team-b") == 300_000
    assert merged.daily_micro() == 90 * USD


async def test_three_regions_on_one_shared_table_stop_at_the_cap_together() -> None:
    """Every region spends as much as its guard admits: the total is the cap, never more."""
    table = MemoryStore()
    clock = FakeClock(at(2026, 12, 7, 12))
    guards = [
        BudgetGuard(RegionalStore(table, region), config().for_region(region), clock=clock)
        for region in SHARES
    ]

    async def spend_until_refused(guard: BudgetGuard) -> int:
        spent = 0
        while True:
            reservation = await guard.reserve(None, 7 * USD)
            if isinstance(reservation, CapReached):
                return spent
            assert isinstance(reservation, Reservation)
            await guard.settle(reservation, 7 * USD)
            spent += 7 * USD

    spent = await asyncio.gather(*(spend_until_refused(guard) for guard in guards))
    assert spent == [147 * USD, 84 * USD, 56 * USD]  # 21, 12 and 8 requests of $7 fit the shares
    assert sum(spent) <= 300 * USD
