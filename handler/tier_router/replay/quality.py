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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tier_router.quality.counts import DIMENSIONS, feedback_deltas, summarize, verdict_deltas
from tier_router.quality.labels import LabelError, check_score
from tier_router.quality.sample import Verdict
from tier_router.spend.pricing import usd

LINE_TYPES = frozenset({"judgement", "feedback"})


def is_quality_line(obj: Mapping[str, Any]) -> bool:
    return obj.get("type") in LINE_TYPES


def _score(value: Any) -> float | None:
    try:
        return check_score("score", value)
    except LabelError:
        return None


def _dims(obj: Mapping[str, Any]) -> dict[str, str]:
    return {dim: obj[dim] for dim in DIMENSIONS if isinstance(obj.get(dim), str) and obj[dim]}


@dataclass
class QualityLog:
    """The quality lines of one replay, summed as the store's `quality:<day>` item sums them
    (`quality.counts`: the same deltas, added up in `fields`)."""

    lines: int = 0
    """Quality lines read (those without a usable verdict or score included)."""
    feedback: int = 0
    fields: dict[str, int] = field(default_factory=dict)

    def add(self, obj: Mapping[str, Any]) -> None:
        """Count one judgement or feedback line (`is_quality_line`)."""
        self.lines += 1
        deltas = self._feedback(obj) if obj.get("type") == "feedback" else self._judgement(obj)
        for name, value in deltas.items():
            self.fields[name] = self.fields.get(name, 0) + value

    @staticmethod
    def _judgement(obj: Mapping[str, Any]) -> dict[str, int]:
        costs = obj.get("cost_micro_usd")
        costs = costs.values() if isinstance(costs, Mapping) else ()
        cost = sum(v for v in costs if type(v) is int and v >= 0)
        try:
            verdict = Verdict(obj.get("verdict"))
        except ValueError:
            deltas = {"judge_skipped" if obj.get("skipped") else "judge_failed": 1}
        else:
            scores = obj.get("scores") if isinstance(obj.get("scores"), Mapping) else {}
            assert isinstance(scores, Mapping)
            served = _score(scores.get(obj.get("tier"))) or 0.0  # unscored: counted, adds no score
            reference = _score(scores.get(obj.get("reference"))) or 0.0
            deltas = verdict_deltas(_dims(obj), verdict, served, reference, None)
        if cost:
            deltas["judge_cost"] = cost
        return deltas

    def _feedback(self, obj: Mapping[str, Any]) -> dict[str, int]:
        score = _score(obj.get("score"))
        if score is None:
            return {}
        self.feedback += 1
        return feedback_deltas(_dims(obj), score)

    def section(self, costs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any] | None:
        """The report's `quality` object (None without a quality line): each value's row of
        `QualityTally.row` (no saving: the replay prices requests itself) with the replay's
        requests and routed cost of that tier or rule (`costs`: "tier"/"rule" -> name -> row)."""
        if not self.lines:
            return None
        summed = summarize("replay", [self.fields])
        out: dict[str, Any] = {
            "judged": summed.judged,
            "judge_failed": summed.judge_failed,
            "judge_skipped": summed.judge_skipped,
            "judge_cost_micro_usd": summed.judge_cost,
            "judge_cost_usd": usd(summed.judge_cost),
            "feedback": self.feedback,
        }
        results = summed.results or {}
        for dim in DIMENSIONS:
            rows = {}
            values = results.get(dim, {}).items()
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
