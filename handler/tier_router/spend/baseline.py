"""Each model's output tokens per request in the week before last: the baseline of the
`OutputTokensVsLastWeek` metric (`telemetry.add_emf`), which a CloudWatch alarm watches for
token inflation (template.yaml, `TokenInflationAlarm`).

    baseline = Baseline(ledger, start=drainer.start)   # one per process (gateway)
    baseline.ratio("claude", 412)                      # 412 / last week's per request, or None

The baseline of budget day D is, per model, the output tokens of days D-13..D-7 of the ledger
over their requests with usage (`Tally.metered`) — one whole week that has ended, never the
current one. A request's line carries its own output tokens over it; CloudWatch's daily
Average of those ratios is this week's mean output per request over last week's (each request
against its own model's baseline, so a shift of traffic between models does not move it).

Loading: the first `ratio` of a budget day starts one load (two batched store reads, see
`spend.trend.read_days`) through `start` — on Lambda the drainer, which finishes it after the
response; no request waits for it. Until it lands the previous day's baseline serves (none on
the process's first day); a load that fails leaves no baseline (no metric) for that day and
logs once. A model with fewer than `min_requests` metered requests that week has no baseline:
one or two requests make a noisy yardstick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tier_router.spend.counters import SpendLedger, days_back
from tier_router.spend.results import Tally
from tier_router.spend.trend import WEEK, read_days

log = logging.getLogger("tier_router")
MIN_REQUESTS = 10


async def previous_week(ledger: SpendLedger, day: str, min_requests: int = MIN_REQUESTS) -> dict[str, float]:
    """Per model, output tokens per metered request over days `day`-13 .. `day`-7."""
    reports = await read_days(ledger, days_back(day, 2 * WEEK)[:WEEK])
    totals: dict[str, Tally] = {}
    for report in reports.values():
        for name, tally in report.results.get("model", {}).items():
            totals.setdefault(name, Tally()).add(tally)
    return {
        name: t.output_tokens / t.metered
        for name, t in totals.items()
        if t.metered >= max(min_requests, 1) and t.output_tokens > 0
    }


class Baseline:
    """Per process: last week's output tokens per request of each model, reloaded once a day."""

    def __init__(
        self,
        ledger: SpendLedger,
        *,
        start: Callable[[Awaitable[None]], Any] | None = None,
        min_requests: int = MIN_REQUESTS,
    ) -> None:
        self.ledger = ledger
        self.min_requests = min_requests
        self._start = start or _spawn
        self.day: str | None = None
        """The budget day whose load was started."""
        self.per_request: dict[str, float] = {}

    def ratio(self, model: str, output_tokens: int) -> float | None:
        """`output_tokens` over `model`'s baseline (4 decimals); None without one. Starts the
        day's load (in the background) on the day's first call from within an event loop."""
        day = self.ledger.today_key()
        if day != self.day:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop to load on (a CLI's line): what is known serves
                pass
            else:
                self.day = day
                self._start(self.load(day))
        base = self.per_request.get(model)
        return round(output_tokens / base, 4) if base else None

    async def load(self, day: str) -> None:
        """Read `day`'s baseline; never raises."""
        try:
            found = await previous_week(self.ledger, day, self.min_requests)
        except Exception as exc:  # the store, or a day item it cannot read: no metric today
            if self.day == day:
                self.per_request = {}
            log.warning("token baseline for %s not loaded (no OutputTokensVsLastWeek today): %s", day, exc)
            return
        if self.day == day:
            self.per_request = found


_PENDING: set[asyncio.Task[None]] = set()


def _spawn(work: Awaitable[None]) -> None:
    """A task held until done (without a drainer: tests, embedding)."""
    task = asyncio.ensure_future(work)
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
