"""Tokens and cost per request over time: per UTC day (by the lines' `ts`) and per model, from
what the log says was used — how a model getting more verbose shows up in a replay.

Counted: the router's served lines that log their tokens (`prompt_tokens`, `completion_tokens`;
cost: `cost_micro_usd`, else those tokens at the model's price in the rules), and request lines
with a logged usage (model: `model_used`, else `response.model`, else the body's `model` when
it names a model; cost: the logged one, else the usage at that model's price). A line without
`ts` is counted as untimed; a cost that cannot be known (no logged cost, a model the rules do
not price) leaves the line out of that day's cost per request only. Memory: one row per
(day, model).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

DAY_S = 86_400


class Trend:
    """Per (UTC day, model): [requests, prompt tokens, completion tokens, µ$, requests priced]."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], list[int]] = {}
        self.untimed = 0

    def add(self, ts: float | None, model: str, prompt: int, completion: int, cost: int | None) -> None:
        if ts is None:
            self.untimed += 1
            return
        key = (int(ts // DAY_S), model)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += prompt
        row[2] += completion
        if cost is not None:
            row[3] += cost
            row[4] += 1

    def section(self) -> dict[str, Any] | None:
        """The report's `trend` (None without a timed line): `days`, oldest first and by model,
        and per model its first and last day's output tokens per request."""
        if not self.rows:
            return None
        days = []
        first: dict[str, dict[str, Any]] = {}
        last: dict[str, dict[str, Any]] = {}
        for (day, model), (n, prompt, completion, cost, priced) in sorted(self.rows.items()):
            row = {
                "day": (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat(),
                "model": model,
                "requests": n,
                "prompt_tokens_per_request": round(prompt / n, 1),
                "completion_tokens_per_request": round(completion / n, 1),
                "cost_micro_usd_per_request": round(cost / priced, 2) if priced else None,
            }
            days.append(row)
            first.setdefault(model, row)
            last[model] = row
        changes = {
            model: {
                "from": first[model]["day"],
                "to": row["day"],
                "completion_tokens_per_request": _change(
                    first[model]["completion_tokens_per_request"], row["completion_tokens_per_request"]
                ),
                "prompt_tokens_per_request": _change(
                    first[model]["prompt_tokens_per_request"], row["prompt_tokens_per_request"]
                ),
                "cost_per_request": _change(
                    first[model]["cost_micro_usd_per_request"], row["cost_micro_usd_per_request"]
                ),
            }
            for model, row in sorted(last.items())
            if row is not first[model]
        }
        return {"days": days, "changes": changes, "untimed": self.untimed}


def _change(old: float | None, new: float | None) -> float | None:
    """new / old - 1, rounded to 4 decimals; None when either is unknown or old is 0."""
    if old is None or new is None or not old:
        return None
    return round(new / old - 1, 4)
