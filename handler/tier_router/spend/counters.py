"""Today's spend, counted in the shared store: totals by tier, model, rule and router key.

One item per budget day, `spend:<day>` (day = "2026-11-23"), updated by ONE atomic
`store.add` per request — total, requests, cache hits and one field per breakdown:

    total, requests, cache_hits, tier.<name>, model.<name>, rule.<name>, key.<id>

Breakdown names are percent-encoded (`urllib.parse.quote`, only `A-Za-z0-9_.-~` kept),
so any router key id or model name is a safe field name and decodes back exactly; the
prefix ends at the first dot. The item expires `retention_days` after its day ends.

The budget day starts at `day_start_hour` UTC (e.g. 8 for a day that starts at 08:00
UTC); "2026-11-23" is the day that STARTS on that date.

Hot-key limit: one DynamoDB item sustains about 1,000 writes/s (one write unit per KB),
and every request writes this item once. Beyond a few hundred requests/s, shard it:
`shards=N` keeps N items `spend:<day>#0 .. #N-1`, writes to a random one and reads all N
with one `get_many` (≤100 keys) and sums — N× the write headroom for the same read cost.
Size: the item grows by one field per distinct model/rule/tier/key seen that day, a few
dozen bytes each — thousands of router keys still fit DynamoDB's 400 KB item limit.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NotRequired, TypedDict, Unpack
from urllib.parse import quote, unquote

from tier_router.spend.pricing import usd
from tier_router.store.base import Store, Value

DAY_S = 86_400
BREAKDOWNS = ("tier", "model", "rule", "key")


# --- the budget day -------------------------------------------------------------------


def day_key(now: float, day_start_hour: int = 0) -> str:
    """The budget day `now` (unix seconds) falls in: "2026-11-23"."""
    return _iso_day(int((now - day_start_hour * 3600) // DAY_S))


@lru_cache(maxsize=64)
def _iso_day(days_since_epoch: int) -> str:
    """Cached: every request asks, and the answer changes once a day."""
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=64)
def day_start(day: str, day_start_hour: int = 0) -> float:
    """Unix seconds at which budget day `day` starts."""
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)
    return (start + timedelta(hours=day_start_hour)).timestamp()


def day_end(day: str, day_start_hour: int = 0) -> float:
    return day_start(day, day_start_hour) + DAY_S


def elapsed_fraction(now: float, day_start_hour: int = 0) -> float:
    """How much of the current budget day has passed, in [0, 1)."""
    start = day_start(day_key(now, day_start_hour), day_start_hour)
    return min(max((now - start) / DAY_S, 0.0), 1.0)


# --- field names ----------------------------------------------------------------------


def field_name(kind: str, name: str) -> str:
    """`tier`, `premium` -> "tier.premium"; anything outside A-Za-z0-9_.-~ is %XX-encoded."""
    return f"{kind}.{quote(name, safe='')}"


def parse_field(field: str) -> tuple[str, str] | None:
    """The inverse of `field_name`; None for plain fields like `total`."""
    kind, dot, encoded = field.partition(".")
    return (kind, unquote(encoded)) if dot else None


# --- the report -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpendReport:
    """One day's spend. Amounts are micro-dollars."""

    day: str
    total: int
    requests: int
    cache_hits: int
    by_tier: dict[str, int]
    by_model: dict[str, int]
    by_rule: dict[str, int]
    """By the decision's label: a rule's name, or "default" / "explicit"."""
    by_key: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """For the status endpoint: USD strings, largest spend first."""

        def money(amounts: Mapping[str, int]) -> dict[str, str]:
            return {k: usd(v) for k, v in sorted(amounts.items(), key=lambda kv: (-kv[1], kv[0]))}

        return {
            "day": self.day,
            "total_usd": usd(self.total),
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "by_tier": money(self.by_tier),
            "by_model": money(self.by_model),
            "by_rule": money(self.by_rule),
            "by_key": money(self.by_key),
        }


def summarize(day: str, items: list[Value]) -> SpendReport:
    """Sum shard items into one report (unknown fields are ignored)."""
    plain = {"total": 0, "requests": 0, "cache_hits": 0}
    groups: dict[str, dict[str, int]] = {kind: {} for kind in BREAKDOWNS}
    for item in items:
        for name, value in item.items():
            if not isinstance(value, int):
                continue
            if name in plain:
                plain[name] += value
                continue
            parsed = parse_field(name)
            if parsed is not None and parsed[0] in groups:
                group = groups[parsed[0]]
                group[parsed[1]] = group.get(parsed[1], 0) + value
    return SpendReport(
        day,
        plain["total"],
        plain["requests"],
        plain["cache_hits"],
        groups["tier"],
        groups["model"],
        groups["rule"],
        groups["key"],
    )


# --- the ledger -----------------------------------------------------------------------


class Charge(TypedDict):
    """One request, as the ledger counts it."""

    cost: int
    """Micro-dollars."""
    tier: str | None
    model: str | None
    rule: str | None
    """The decision's label: a rule's name, or "default" / "explicit"."""
    router_key: str | None
    cache_hit: NotRequired[bool]


class SpendLedger:
    """Records what each request cost. One per process; cheap to construct."""

    def __init__(
        self,
        store: Store,
        *,
        retention_days: int = 35,
        day_start_hour: int = 0,
        shards: int = 1,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "spend:",
    ) -> None:
        if shards < 1 or shards > 100:
            raise ValueError("shards must be 1..100 (one get_many reads them all)")
        if not 0 <= day_start_hour <= 23:
            raise ValueError("day_start_hour must be 0..23")
        self.store = store
        self.retention_days = retention_days
        self.day_start_hour = day_start_hour
        self.shards = shards
        self._clock = clock
        self._prefix = key_prefix

    def today_key(self) -> str:
        return day_key(self._clock(), self.day_start_hour)

    def item_keys(self, day: str) -> list[str]:
        base = f"{self._prefix}{day}"
        return [base] if self.shards == 1 else [f"{base}#{i}" for i in range(self.shards)]

    @staticmethod
    def deltas(**charge: Unpack[Charge]) -> dict[str, int]:
        """The fields one request adds (pure; `record` writes exactly this)."""
        cost = charge["cost"]
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise TypeError(f"cost is integer micro-dollars, got {type(cost).__name__}")
        deltas = {"requests": 1}
        if charge.get("cache_hit"):
            deltas["cache_hits"] = 1
        if cost:  # no zero deltas: moto's DynamoDB omits unchanged fields from add's result
            deltas["total"] = cost
            for kind, name in (
                ("tier", charge["tier"]),
                ("model", charge["model"]),
                ("rule", charge["rule"]),
                ("key", charge["router_key"]),
            ):
                if name:
                    deltas[field_name(kind, name)] = cost
        return deltas

    async def record(self, day: str | None = None, **charge: Unpack[Charge]) -> None:
        """Count one request on `day` (default: today). One atomic write. Raises StoreError;
        the caller (a `finally` path) should log and move on — spend counters are reporting,
        the budget items hold what enforcement needs."""
        day = day or self.today_key()
        deltas = self.deltas(**charge)
        keys = self.item_keys(day)
        key = keys[0] if len(keys) == 1 else random.choice(keys)  # noqa: S311 - load spreading, not security
        expires = day_end(day, self.day_start_hour) + self.retention_days * DAY_S
        await self.store.add(key, deltas, expires_at=expires)

    async def report(self, day: str) -> SpendReport:
        items = await self.store.get_many(self.item_keys(day))
        return summarize(day, list(items.values()))

    async def today(self) -> SpendReport:
        return await self.report(self.today_key())
