"""The quality report: per tier, rule, model and arm, how the judged answers did against the
reference tier's, what feedback said, and what answering on a cheaper tier saved.

    report = await read(ledger, days=7, reference="premium")   # store reads of <= 100 keys
    report.as_dict()                                           # `tier-router quality --json`,
                                                               # `/v1/router/status` → `quality`
    render(report.as_dict())                                   # `tier-router quality`

It reads the `quality:<day>` items (`quality.counts`) and the spend ledger's day items
(`spend.counters`) of the same budget days — today, or the last `days` — together. Per value:
samples, win / tie / loss with a 95% Wilson interval of the loss rate (and of "not worse"),
the judge's average scores of the served and the reference answers, feedback count and
average; for the whole report, the judgements done / failed / skipped and what judging cost.

The saving is an ESTIMATE, extrapolated from the judged samples:

    saved_estimate = (Σ over judged requests of reference cost − served cost) / samples
                     × requests the value answered in the same days (the ledger's count)

so it is as good as the samples are representative (`saved_estimate_from` says how many),
null for a value never judged, and negative where the reference tier was the cheaper. The
ledger counts a request on its DECIDED tier (an escalated request on the tier it was sent
to first); judgements count on the tier that answered. A row appears once its value has
been judged or has feedback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tier_router.quality.counts import DIMENSIONS, QualityDay, QualityTally, item_key, summarize
from tier_router.spend.counters import SpendLedger, days_back, read_batched
from tier_router.spend.counters import summarize as summarize_spend
from tier_router.spend.pricing import usd


@dataclass(frozen=True, slots=True)
class QualityReport:
    days: list[str]
    quality: QualityDay
    """Every day's quality items, summed."""
    requests: dict[str, dict[str, int]]
    """dimension -> value -> requests the ledger counted on it in those days."""
    reference: str | None = None
    """The rules file's reference tier (rules may name their own)."""

    def as_dict(self) -> dict[str, Any]:
        q = self.quality
        results = q.results or {}
        return {
            "days": self.days,
            "reference": self.reference,
            "judged": q.judged,
            "judge_failed": q.judge_failed,
            "judge_skipped": q.judge_skipped,
            "judge_cost_micro_usd": q.judge_cost,
            "judge_cost_usd": usd(q.judge_cost),
            **{dim: self._rows(dim, results.get(dim, {})) for dim in DIMENSIONS},
        }

    def _rows(self, dim: str, values: dict[str, QualityTally]) -> dict[str, dict[str, Any]]:
        counted = self.requests.get(dim, {})
        ordered = sorted(values.items(), key=lambda kv: (-kv[1].samples, -kv[1].feedback, kv[0]))
        return {name: row(tally, counted.get(name, 0)) for name, tally in ordered}


def row(tally: QualityTally, requests: int) -> dict[str, Any]:
    """One value's row: `QualityTally.row` plus the requests answered and the saving estimate."""
    out = tally.row()
    per_request = out["saved_per_request_micro_usd"]
    estimate = per_request * requests if per_request is not None else None
    out["requests"] = requests
    out["saved_estimate_micro_usd"] = estimate
    out["saved_estimate_usd"] = None if estimate is None else usd(estimate)
    out["saved_estimate_from"] = tally.samples
    return out


async def read(
    ledger: SpendLedger, *, days: int = 1, reference: str | None = None, today: str | None = None
) -> QualityReport:
    """The report over the last `days` budget days (ending today, or `today`), from the
    ledger's store: quality and spend items read together. Raises StoreError."""
    covered = days_back(today or ledger.today_key(), days)
    quality_keys = [item_key(day) for day in covered]
    pins = [ledger.layouts.key(day) for day in covered]  # each day's layout (`spend.layout`)
    items = await read_batched(ledger.store, quality_keys + pins)
    layouts = [ledger.layouts.layout_of(day, items.get(pin)) for day, pin in zip(covered, pins, strict=True)]
    spend_keys = [key for layout in layouts for key in layout.items]
    items.update(await read_batched(ledger.store, spend_keys))
    label = covered[0] if len(covered) == 1 else f"{covered[0]}..{covered[-1]}"
    quality = summarize(label, _present(items, quality_keys))
    carried = [dict(layout.carried) for layout in layouts if layout.carried]  # from before each pin
    spend = summarize_spend(label, [*_present(items, spend_keys), *carried])
    requests = {dim: {name: t.requests for name, t in vs.items()} for dim, vs in spend.results.items()}
    return QualityReport(covered, quality, requests, reference)


def _present(items: dict[str, Any], keys: Iterable[str]) -> Iterable[dict[str, Any]]:
    return (items[key] for key in keys if key in items)


# -- text ----------------------------------------------------------------------------------------

HEAD = (
    f"{'judged':>6} {'win/tie/loss':>15} {'loss rate (95% CI)':>19} {'score':>5} {'ref.':>5}"
    f" {'fb':>5} {'fb avg':>6} {'requests':>8}"
)
SAVED = ("saved est. $", "saved_estimate_usd")
TITLES = (("by tier", "tier"), ("by rule", "rule"), ("by model", "model"), ("by arm", "arm"))


def table(title: str, rows: dict[str, dict[str, Any]], last: tuple[str, str] = SAVED) -> list[str]:
    """One dimension's rows, as `spend.results.table` lays out results ("-": not measured);
    `last`: the last column's heading and field (`replay` shows its routed cost there)."""

    def cell(value: Any, width: int, form: str = "") -> str:
        return f"{'-' if value is None else format(value, form):>{width}}"

    out = [f"{title:<26}{HEAD} {last[0]:>12}"]
    for name, r in rows.items():
        label = name if len(name) <= 23 else name[:22] + "~"
        counts = f"{r['wins']}/{r['ties']}/{r['losses']}" if r["samples"] else None
        loss = None
        if r["loss_rate"] is not None:
            low, high = r["loss_rate_ci"]
            loss = f"{r['loss_rate']:.1%} [{low:.0%}-{high:.0%}]"
        out.append(
            f"  {label:<23} {r['samples']:>6} {cell(counts, 15)} {cell(loss, 19)}"
            f" {cell(r['score'], 5, '.2f')} {cell(r['reference_score'], 5, '.2f')}"
            f" {r['feedback']:>5} {cell(r['feedback_score'], 6, '.2f')} {cell(r['requests'], 8)}"
            f" {cell(r[last[1]], 12)}"
        )
    return out


def render(data: dict[str, Any]) -> str:
    """The `as_dict` data for people."""
    days = data["days"]
    span = f"{days[0]} (UTC budget day)"
    if len(days) > 1:
        span = f"{days[0]} .. {days[-1]} ({len(days)} UTC budget days)"
    reference = f"; reference tier {data['reference']}" if data.get("reference") else ""
    lines = [
        f"quality   {span}{reference}",
        f"judged    {data['judged']} ({data['judge_failed']} failed, {data['judge_skipped']} skipped),"
        f" judging cost ${data['judge_cost_usd']}",
    ]
    shown = False
    for title, dim in TITLES:
        if data.get(dim):
            lines.extend(table(title, data[dim]))
            shown = True
    if not shown:
        lines.append("nothing judged and no feedback in these days")
        return "\n".join(lines)
    lines += [
        "",
        "win/tie/loss: the served answer against the reference tier's; score, ref.: the judge's average",
        "(0..1); fb: feedback count and average. saved est.: the average saving per judged request",
        "x the requests answered (spend ledger): an estimate from the judged samples, - if none.",
    ]
    return "\n".join(lines)
