"""Quality lines in a replayed log: judgements and feedback, counted beside the cost.

The router's log carries, besides one line per request, one line per judgement
(`{"type": "judgement", ...}`, `quality.runner`) and one per feedback
(`{"type": "feedback", ...}`, `POST /v1/feedback`). They are not requests: a replay never
routes or prices them. It counts them per tier, rule, model and arm as the store's
`quality:<day>` items do (`quality.counts.QualityTally`: verdicts, the judge's scores,
feedback), and what judging cost; the report puts each tier's and rule's quality beside its
requests and cost in this replay. Bounded memory: one tally per value. A log is data: a field
of the wrong type is ignored (the line still counts where it can), never trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tier_router.quality.counts import DIMENSIONS, QualityTally, milli
from tier_router.spend.pricing import usd

LINE_TYPES = frozenset({"judgement", "feedback"})
VERDICTS = {"win": "wins", "tie": "ties", "loss": "losses"}


def is_quality_line(obj: Mapping[str, Any]) -> bool:
    return obj.get("type") in LINE_TYPES


def _score(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value) and 0 <= value <= 1:
        return float(value)
    return None


def _dims(obj: Mapping[str, Any]) -> dict[str, str]:
    return {dim: obj[dim] for dim in DIMENSIONS if isinstance(obj.get(dim), str) and obj[dim]}


@dataclass
class QualityLog:
    """The quality lines of one replay, summed."""

    lines: int = 0
    """Quality lines read (those without a usable verdict or score included)."""
    judged: int = 0
    judge_failed: int = 0
    judge_skipped: int = 0
    judge_cost: int = 0
    feedback: int = 0
    results: dict[str, dict[str, QualityTally]] = field(default_factory=lambda: {d: {} for d in DIMENSIONS})

    def add(self, obj: Mapping[str, Any]) -> None:
        """Count one judgement or feedback line (`is_quality_line`)."""
        self.lines += 1
        if obj.get("type") == "feedback":
            self._feedback(obj)
        else:
            self._judgement(obj)

    def _tally(self, dim: str, name: str) -> QualityTally:
        return self.results[dim].setdefault(name, QualityTally())

    def _judgement(self, obj: Mapping[str, Any]) -> None:
        costs = obj.get("cost_micro_usd")
        if isinstance(costs, Mapping):
            self.judge_cost += sum(v for v in costs.values() if type(v) is int and v >= 0)
        verdict = VERDICTS.get(obj.get("verdict"))  # type: ignore[arg-type]
        if verdict is None:
            if obj.get("skipped"):
                self.judge_skipped += 1
            else:
                self.judge_failed += 1
            return
        self.judged += 1
        scores = obj.get("scores") if isinstance(obj.get("scores"), Mapping) else {}
        assert isinstance(scores, Mapping)
        served = _score(scores.get(obj.get("tier")))
        reference = _score(scores.get(obj.get("reference")))
        for dim, name in _dims(obj).items():
            tally = self._tally(dim, name)
            setattr(tally, verdict, getattr(tally, verdict) + 1)
            tally.score_milli += milli(served) if served is not None else 0
            tally.reference_milli += milli(reference) if reference is not None else 0

    def _feedback(self, obj: Mapping[str, Any]) -> None:
        score = _score(obj.get("score"))
        if score is None:
            return
        self.feedback += 1
        for dim, name in _dims(obj).items():
            tally = self._tally(dim, name)
            tally.feedback += 1
            tally.feedback_milli += milli(score)

    def section(self, costs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
        """The report's `quality` object (None without a quality line): each value's row of
        `QualityTally.row` (no saving: the replay prices requests itself) with the replay's
        requests and routed cost of that tier or rule (`costs`: "tier"/"rule" -> name -> row)."""
        if not self.lines:
            return None
        out: dict[str, Any] = {
            "judged": self.judged,
            "judge_failed": self.judge_failed,
            "judge_skipped": self.judge_skipped,
            "judge_cost_micro_usd": self.judge_cost,
            "judge_cost_usd": usd(self.judge_cost),
            "feedback": self.feedback,
        }
        for dim in DIMENSIONS:
            rows = {}
            values = self.results[dim].items()
            for name, tally in sorted(values, key=lambda kv: (-kv[1].samples, -kv[1].feedback, kv[0])):
                row = tally.row()
                del row["saved_per_request_micro_usd"]
                cost = costs.get(dim, {}).get(name)
                row["requests"] = cost["requests"] if cost else None
                row["routed_micro_usd"] = cost["routed_micro_usd"] if cost else None
                row["routed_usd"] = cost["routed_usd"] if cost else None
                rows[name] = row
            out[dim] = rows
        return out
