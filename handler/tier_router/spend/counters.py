"""Today's spend and results, counted in the shared store: by tier, model, rule, key and arm.

One item per budget day, `spend:<day>` (day = "2026-11-23"), updated by ONE atomic
`store.add` per request — total, requests, cache hits, and per dimension value (see
`spend.results` for what a request counts on each) its cost and its results:

    total, requests, cache_hits
    <dim>.<value>        cost, µ$            (dim: tier, model, rule, key, arm)
    <dim>_n.<value>      requests
    <dim>_ms.<value>     latency sum, whole ms
    <dim>_err.<value>    errors
    <dim>_esc.<value>    escalations
    <dim>_ok.<value>     successes
    <dim>_use.<value>    requests whose provider reported usage     (dim: model, rule)
    <dim>_in.<value>     input tokens (cached ones included)         (dim: model, rule)
    <dim>_out.<value>    output tokens                              (dim: model, rule)
    <dim>_cin.<value>    cached input tokens                        (dim: model, rule)
    <dim>_chit.<value>   requests with cached input (a cache hit)    (dim: model, rule)
    <dim>_sav.<value>    what the cached input saved, µ$ (rounded down) (dim: model, rule)

Values are percent-encoded (`urllib.parse.quote`, only `A-Za-z0-9_.-~` kept), so any router
key id or model name is a safe field name and decodes back exactly; the kind (`tier_n`)
ends at the first dot. Zero deltas are not written, so a field appears only once it counts
something. The item expires `retention_days` after its day ends.

Compatibility: the cost fields are the ones written before results were counted (`tier.x`
etc.; `arm.x` is new), and readers ignore kinds they do not know — so older routers read
new items (cost only, or results without tokens) and new readers read old items: their
values have a cost and no results (requests 0, rates null), or results and no tokens
(metered 0: tokens per request null). A day written partly by each has results (tokens) for
the requests counted since the change, and costs for all.

The budget day starts at `day_start_hour` UTC (e.g. 8 for a day that starts at 08:00
UTC); "2026-11-23" is the day that STARTS on that date.

Hot-key limit: one DynamoDB item sustains about 1,000 writes/s (one write unit per KB),
and every request writes this item once (with budgets on, its settle does, `spend.budget`:
the same items hold the budgets). Beyond a few hundred requests/s, shard it (`budgets.shards`,
`spend.shards`): N items `spend:<day>#0 .. #N-1`, a write goes to a random one, reads get all
N with one `get_many` (≤100 keys) and sum — N× the write headroom for the same read cost.
Readers ignore the budget's fields (`committed`, `spent`, `kc.*`, holds).
Size: each distinct value seen that day (a tier, key or arm) takes up to six fields (errors
and escalations only once it has had one): their names are 6 × its encoded length + 40 to
46 bytes of kinds and dots, their numbers 1 + 1 per 2 digits each in DynamoDB — at most
6 × len + 88 bytes with every count up to 11 digits: ~200 bytes for a 20-character key id
(`tests/spend/test_results.py`), so DynamoDB's 400 KB item limit holds ~2,000 such values a
day (every shard may see every value: shards add write headroom, not room). A model or a
rule takes up to twelve (its tokens, cache hits and savings too): 12 × len + 112 bytes of
names (a model; a rule's are 12 fewer), 12 × 7 of numbers at most (every count up to 11
digits: 99 billion tokens a day) — 436 bytes for a 20-character model name. Tiers, rules
and models are few (the rules file names them); keys and arms are what grows. An update is
billed by the item's size (one write unit per KB, before or after, the larger): a day with
many keys or models costs more write units per request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NotRequired, TypedDict, Unpack
from urllib.parse import quote, unquote

from tier_router.spend.layout import LEGACY_PREFIX, DayLayouts
from tier_router.spend.pricing import usd
from tier_router.spend.results import RequestResult, Results, Tally, empty_results, rows
from tier_router.spend.shards import MAX_SHARDS, day_items
from tier_router.store.base import Store, Value

DAY_S = 86_400
BREAKDOWNS = ("tier", "model", "rule", "key")
"""The cost breakdowns of `SpendReport` (`by_tier` ...); `arm` costs are in its results."""
METRIC_KINDS = {
    "n": "requests",
    "ms": "latency_ms",
    "err": "errors",
    "esc": "escalations",
    "ok": "successes",
    "use": "metered",
    "in": "input_tokens",
    "out": "output_tokens",
    "cin": "cached_tokens",
    "chit": "cached_requests",
    "sav": "savings",
}
"""`<dim>_<suffix>.<value>` -> the `Tally` field it holds (`<dim>.<value>` holds the cost); the
token kinds are written for `model` and `rule` only (`spend.results`)."""
_SUFFIXES = {attr: suffix for suffix, attr in METRIC_KINDS.items()}


# --- the budget day -------------------------------------------------------------------


def day_key(now: float, day_start_hour: int = 0) -> str:
    """The budget day `now` (unix seconds) falls in: "2026-11-23"."""
    return _iso_day(int((now - day_start_hour * 3600) // DAY_S))


@lru_cache(maxsize=64)
def _iso_day(days_since_epoch: int) -> str:
    """Cached: every request asks, and the answer changes once a day."""
    return date.fromordinal(_EPOCH_ORDINAL + days_since_epoch).isoformat()


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


MAX_DAYS = 366
"""The longest span a report reads (status' trend, the quality report)."""
READ_BATCH = 100
"""Keys per `get_many` when a report reads many days (DynamoDB's BatchGetItem limit)."""


def days_back(today: str, days: int) -> list[str]:
    """`days` budget days ending with `today`, oldest first."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be 1..{MAX_DAYS}")
    last = date.fromisoformat(today)
    return [(last - timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]


async def read_batched(store: Store, keys: list[str]) -> dict[str, Value]:
    """Every present item of `keys`, in `get_many` calls of at most READ_BATCH keys."""
    found: dict[str, Value] = {}
    for start in range(0, len(keys), READ_BATCH):
        found.update(await store.get_many(keys[start : start + READ_BATCH]))
    return found


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
    results: Results = field(default_factory=empty_results)
    """dimension (tier, rule, model, arm, key) -> value -> its `Tally` (`spend.results`)."""

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
            "results": rows(self.results),
        }


def summarize(day: str, items: list[Value]) -> SpendReport:
    """Sum shard items into one report (unknown fields are ignored)."""
    plain = {"total": 0, "requests": 0, "cache_hits": 0}
    groups: dict[str, dict[str, int]] = {kind: {} for kind in BREAKDOWNS}
    results = empty_results()
    for item in items:
        for name, value in item.items():
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if name in plain:
                plain[name] += value
                continue
            parsed = parse_field(name)
            if parsed is None:
                continue
            kind, value_name = parsed
            dim, _, suffix = kind.partition("_")
            attr = METRIC_KINDS.get(suffix) if suffix else "cost"
            if dim not in results or attr is None:
                continue
            tally = results[dim].setdefault(value_name, Tally())
            setattr(tally, attr, getattr(tally, attr) + value)
            if kind in groups:
                group = groups[kind]
                group[value_name] = group.get(value_name, 0) + value
    return SpendReport(
        day,
        plain["total"],
        plain["requests"],
        plain["cache_hits"],
        groups["tier"],
        groups["model"],
        groups["rule"],
        groups["key"],
        results,
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
    result: NotRequired[RequestResult | None]
    """What the request did (`RequestResult.of(line, cost=<the same cost>, ...)`): with it,
    every dimension value is taken from it and counts its cost AND its results; without it
    (older callers), only the cost is counted, on `tier`, `model`, `rule` and `router_key`."""


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
        layouts: DayLayouts | None = None,
    ) -> None:
        """`layouts`: the days' pinned layouts (`spend.layout`), shared with the budget guard of
        the same store; by default the ledger's own, pinning `shards`."""
        if shards < 1 or shards > MAX_SHARDS:
            raise ValueError("shards must be 1..100 (one get_many reads them all)")
        if not 0 <= day_start_hour <= 23:
            raise ValueError("day_start_hour must be 0..23")
        self.store = store
        self.retention_days = retention_days
        self.day_start_hour = day_start_hour
        self.shards = shards
        self._clock = clock
        self._prefix = key_prefix
        legacy = LEGACY_PREFIX if key_prefix == "spend:" else None
        self.layouts = layouts or DayLayouts(
            store, shards=shards, expires=self._expiry, prefix=key_prefix, legacy_prefix=legacy
        )

    def _expiry(self, day: str) -> float:
        return day_end(day, self.day_start_hour) + self.retention_days * DAY_S

    def today_key(self) -> str:
        return day_key(self._clock(), self.day_start_hour)

    def item_keys(self, day: str) -> list[str]:
        """The day's items: as pinned, when this process knows the pin; else as configured."""
        known = self.layouts.cached(day)
        return list(known.items) if known else day_items(self._prefix, day, self.shards)

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
        result = charge.get("result")
        if result is not None:
            for dim, name, tally in result.tallies():
                add_tally(deltas, dim, name, tally)
        elif cost:
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
        await self.record_deltas(day or self.today_key(), self.deltas(**charge))

    async def record_deltas(self, day: str, deltas: dict[str, int]) -> None:
        """Write `deltas` (from `deltas`) on one of `day`'s shards. Raises StoreError."""
        keys = (self.layouts.cached(day) or await self.layouts.pinned(day)).items
        key = keys[0] if len(keys) == 1 else random.choice(keys)  # noqa: S311 - load spreading, not security
        await self.store.add(key, deltas, expires_at=self._expiry(day))

    async def report(self, day: str) -> SpendReport:
        return summarize(day, await self.day_values(day))

    async def day_values(self, day: str) -> list[Value]:
        """The day's (pinned) items, and what the pin carried from before it (`spend.layout`)."""
        layout = await self.layouts.view(day)
        items = await self.store.get_many(layout.items)
        return [*items.values(), dict(layout.carried)]

    async def today(self) -> SpendReport:
        return await self.report(self.today_key())


def add_tally(deltas: dict[str, int], dim: str, name: str, tally: Tally) -> None:
    """`tally`'s non-zero counts as field deltas of dimension value `dim`/`name`."""
    if tally.cost:
        key = field_name(dim, name)
        deltas[key] = deltas.get(key, 0) + tally.cost
    for attr, suffix in _SUFFIXES.items():
        count = getattr(tally, attr)
        if count:
            key = field_name(f"{dim}_{suffix}", name)
            deltas[key] = deltas.get(key, 0) + count
