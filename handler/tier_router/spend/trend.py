"""Tokens and cost per request over time, per model and per rule: the trend `tier-router status`
and GET /v1/router/status show, read back from the ledger's day items (`spend.counters`).

    trend = await read_trend(ledger, days=14)     # 2 batched reads (+1 per further 100 keys)
    trend.as_dict()                               # status --json, /v1/router/status → "trend"
    render(trend.as_dict())                       # status's text

Per value and day: requests, input and output tokens per request, cost per request, the cached
share of input and what the cache saved; over the shown days the same, summed; and week over
week — the last 7 budget days (today included, however far it has got) against the 7 before —
the relative change of output tokens per request and of cost per request (`+0.25` = 25% more),
null when either week has no request (none with usage, for tokens) or the earlier one's value
is 0. Whatever `days`, the 14 days a week-over-week change needs are read.

Tokens per request are over the requests whose provider reported usage (`Tally.metered`:
response-cache hits, failures and streams cut before their usage are left out), cost per
request over every request the value counted (what a request costs, failures included). A day
written before tokens were counted has requests and cost but no tokens: its token columns are
null, and a week made only of such days has no week-over-week token change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tier_router.spend.counters import (
    SpendLedger,
    SpendReport,
    days_back,
    read_batched,
    summarize,
)
from tier_router.spend.pricing import usd
from tier_router.spend.results import TOKEN_DIMENSIONS, Tally
from tier_router.store.base import Value

DEFAULT_DAYS = 14
WEEK = 7
SPARK = "▁▂▃▄▅▆▇█"
SPARK_DAYS = 14
"""The text's daily column shows at most this many days (the JSON has every day)."""


async def read_days(ledger: SpendLedger, days: list[str]) -> dict[str, SpendReport]:
    """Each day's report: the days' layout pins in one read, then every day's items (shards
    summed, with what each pin carried) — `get_many` calls of at most 100 keys."""
    pins = [ledger.layouts.key(day) for day in days]
    pinned = await read_batched(ledger.store, pins)
    layouts = [ledger.layouts.layout_of(day, pinned.get(pin)) for day, pin in zip(days, pins, strict=True)]
    items = await read_batched(ledger.store, [key for layout in layouts for key in layout.items])
    reports = {}
    for layout in layouts:
        values: list[Value] = [items[key] for key in layout.items if key in items]
        reports[layout.day] = summarize(layout.day, [*values, dict(layout.carried)])
    return reports


@dataclass(frozen=True, slots=True)
class Trend:
    days: list[str]
    """The shown days, oldest first."""
    series: dict[str, dict[str, list[Tally]]]
    """dimension (model, rule) -> value -> its tally on each of `days`."""
    weeks: dict[str, dict[str, tuple[Tally, Tally]]]
    """dimension -> value -> (the 7 days before the last 7, the last 7)."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"days": self.days}
        for dim, values in self.series.items():
            rows = {}
            for name, daily in values.items():
                total = _sum(daily)
                before, last = self.weeks[dim][name]
                rows[name] = {
                    **row(total),
                    "week_over_week": {
                        "output_tokens_per_request": change(per_request(last), per_request(before)),
                        "cost_per_request": change(cost_per_request(last), cost_per_request(before)),
                    },
                    "by_day": [{"day": day, **row(t)} for day, t in zip(self.days, daily, strict=True)],
                }
            out[dim] = dict(sorted(rows.items(), key=lambda kv: (-kv[1]["cost_micro_usd"], kv[0])))
        return out


def row(t: Tally) -> dict[str, Any]:
    """One value's counts over some days, and its per-request figures (null without requests)."""
    return {
        "requests": t.requests,
        "metered": t.metered,
        "input_tokens": t.input_tokens,
        "output_tokens": t.output_tokens,
        "cached_tokens": t.cached_tokens,
        "cached_requests": t.cached_requests,
        "cost_micro_usd": t.cost,
        "savings_micro_usd": t.savings,
        "input_tokens_per_request": round(t.input_tokens / t.metered, 1) if t.metered else None,
        "output_tokens_per_request": round(t.output_tokens / t.metered, 1) if t.metered else None,
        "cost_per_request_usd": usd(round(t.cost / t.requests)) if t.requests else None,
        "cached_share": round(t.cached_tokens / t.input_tokens, 4) if t.input_tokens else None,
        "savings_usd": usd(t.savings),
    }


def per_request(t: Tally) -> float | None:
    """Output tokens per request with usage."""
    return t.output_tokens / t.metered if t.metered else None


def cost_per_request(t: Tally) -> float | None:
    return t.cost / t.requests if t.requests else None


def change(now: float | None, before: float | None) -> float | None:
    """`now` relative to `before` (+0.25: 25% more); null when either is missing or `before` is 0."""
    if now is None or not before:
        return None
    return round(now / before - 1, 4)


def _sum(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for t in tallies:
        total.add(t)
    return total


def trend_of(reports: Mapping[str, SpendReport], days: list[str], today: str) -> Trend:
    """The trend over `days` (shown) and the two weeks ending `today`, from the days' reports
    (a day without a report counts nothing)."""
    two_weeks = days_back(today, 2 * WEEK)
    series: dict[str, dict[str, list[Tally]]] = {}
    weeks: dict[str, dict[str, tuple[Tally, Tally]]] = {}
    for dim in TOKEN_DIMENSIONS:

        def on(day: str, name: str, dim: str = dim) -> Tally:
            report = reports.get(day)
            return (report.results.get(dim, {}).get(name) if report else None) or Tally()

        names = sorted({n for d in days if (r := reports.get(d)) for n in r.results.get(dim, {})})
        series[dim] = {name: [on(day, name) for day in days] for name in names}
        weeks[dim] = {
            name: (_sum(on(d, name) for d in two_weeks[:WEEK]), _sum(on(d, name) for d in two_weeks[WEEK:]))
            for name in names
        }
    return Trend(days, series, weeks)


async def read_trend(ledger: SpendLedger, *, days: int = DEFAULT_DAYS, today: str | None = None) -> Trend:
    """The last `days` budget days ending today (or `today`). Raises StoreError, and ValueError
    for `days` outside 1..366."""
    today = today or ledger.today_key()
    shown = days_back(today, days)
    wanted = days_back(today, max(days, 2 * WEEK))
    return trend_of(await read_days(ledger, wanted), shown, today)


# -- text ----------------------------------------------------------------------------------------

HEAD = (
    f"{'reqs':>7} {'out/req':>7} {'$/req':>9} {'cached':>6} {'saved $':>9}"
    f"  {'out/req by day':<14} {'out w/w':>7} {'$ w/w':>7}"
)
"""The columns: 74 characters, 98 with the name's 24."""


def render(data: dict[str, Any]) -> str:
    """`as_dict`'s data as one table: a row per model and rule over the shown days ("-": not
    counted) — requests, output tokens and cost per request, the cached share of input, the
    savings — the daily output tokens per request as a sparkline (the last 14 days; "." a day
    without usage) and the week-over-week changes. Input tokens per request and every day's
    figures are in the JSON."""
    days = data["days"]
    span = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}"
    lines = [f"trend     {span} ({len(days)} UTC budget days); w/w: the last 7 days over the 7 before"]
    rows = [(dim, name, r) for dim in TOKEN_DIMENSIONS for name, r in (data.get(dim) or {}).items()]
    if not rows:
        lines.append("  no requests in these days")
        return "\n".join(lines)
    lines.append(f"{'':<24}{HEAD}")
    for dim, name, r in rows:
        label = f"{dim} {name}"
        label = label if len(label) <= 22 else label[:21] + "~"
        wow = r["week_over_week"]
        lines.append(
            f"  {label:<22}{r['requests']:>7} {_cell(r['output_tokens_per_request'], 7, '.1f')}"
            f" {_cell(r['cost_per_request_usd'], 9)} {_cell(r['cached_share'], 6, '.0%')}"
            f" {r['savings_usd']:>9}"
            f"  {spark([d['output_tokens_per_request'] for d in r['by_day'][-SPARK_DAYS:]]):<14}"
            f" {_cell(wow['output_tokens_per_request'], 7, '+.1%')}"
            f" {_cell(wow['cost_per_request'], 7, '+.1%')}"
        )
    return "\n".join(lines)


def spark(values: list[float | None]) -> str:
    """Each value as a block from ▁ to █ (scaled to the largest), "." for none."""
    top = max((v for v in values if v is not None), default=0)
    return "".join(
        "." if v is None else SPARK[round(v / top * (len(SPARK) - 1))] if top else SPARK[0] for v in values
    )


def _cell(value: Any, width: int, form: str = "") -> str:
    return f"{'-' if value is None else format(value, form):>{width}}"
