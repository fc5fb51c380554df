"""`tier-router status`: today's spend, budgets, quality, breaker states and the token and
cost trend of the last days (`spend.trend`), read from the state store — for this router,
or, on a table several regions share (`store.regional`), for each region and their spend
summed.

Regions are listed, not discovered (a key-value store cannot list its keys): this region,
those of `budgets.region_shares`, and any named with `--regions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tier_router.admission import SpendControls
from tier_router.gateway import breaker_health
from tier_router.quality import report as quality_report
from tier_router.routing.engine import Rules
from tier_router.spend.counters import summarize
from tier_router.spend.trend import DEFAULT_DAYS, read_trend
from tier_router.store.base import Store, Value
from tier_router.store.regional import RegionalStore


async def read_status(
    store: Store, rules: Rules, region: str | None, regions: Iterable[str] = (), days: int = DEFAULT_DAYS
) -> dict[str, Any]:
    """One router's status; on a regional store, `{"spend": <all regions'>, "regions": {...}}`.
    `days`: how many budget days the trend shows (each region's, on a regional store)."""
    if not isinstance(store, RegionalStore):
        return await one_region(store, rules, region, days)
    names = list(dict.fromkeys([store.region, *regions, *rules.spec.budgets.region_shares]))
    day = SpendControls(store, rules).ledger.today_key()
    per_region: dict[str, dict[str, Any]] = {}
    items: list[Value] = []
    for name in names:
        view = store.in_region(name)
        per_region[name] = await one_region(view, rules, name, days)
        items += await SpendControls(view, rules).ledger.day_values(day)  # its pinned layout
    return {"spend": summarize(day, items).as_dict(), "regions": per_region}


async def one_region(
    store: Store, rules: Rules, region: str | None, days: int = DEFAULT_DAYS
) -> dict[str, Any]:
    controls = SpendControls(store, rules, region=region)
    data = await controls.status()
    data["trend"] = (await read_trend(controls.ledger, days=days)).as_dict()
    quality = await quality_report.read(controls.ledger, reference=rules.spec.quality.reference)
    data["quality"] = quality.as_dict()
    health = breaker_health(store, rules)
    data["breakers"] = await health.states(list(rules.routes.values())) if health else {}
    return data
