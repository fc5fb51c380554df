"""Quality counted in the shared store: verdicts and feedback per tier, rule, model and arm.

One item per day, `quality:<day>` (the budget day, `spend.counters.day_key`), updated by ONE
atomic `store.add` per judgement or feedback. Field names follow `spend.counters` (values
percent-encoded after the first dot):

    judged, judge_failed, judge_skipped     judgements done / failed / not started (budget, load)
    judge_cost                              what judging cost, µ$ (reference answers + judge calls)
    <dim>_win.<v> _tie.<v> _loss.<v>        verdicts of the served answer against the reference
    <dim>_qs.<v>                            the served answers' judge scores, summed, in 1/1000
    <dim>_qr.<v>                            the reference answers' judge scores, summed, in 1/1000
    <dim>_sav.<v>                           reference cost − served cost over judged requests, µ$
                                            (negative when the reference was cheaper)
    <dim>_fbn.<v> _fbs.<v>                  feedback: count, and scores summed in 1/1000

dim: tier, rule, model, arm. Scores are 0..1 (1 = fully acceptable), kept as integers in
thousandths so every store adds them exactly. The item expires `retention_days` after its
day ends. Zero deltas are not written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from tier_router.quality.sample import Verdict
from tier_router.spend.counters import DAY_S, day_end, field_name, parse_field

DIMENSIONS = ("tier", "rule", "model", "arm")
PREFIX = "quality:"
MILLI = 1000
PLAIN = ("judged", "judge_failed", "judge_skipped", "judge_cost")
SUFFIXES = {
    "win": "wins",
    "tie": "ties",
    "loss": "losses",
    "qs": "score_milli",
    "qr": "reference_milli",
    "sav": "saved",
    "fbn": "feedback",
    "fbs": "feedback_milli",
}
Z95 = 1.959964


def milli(score: float) -> int:
    """A 0..1 score in thousandths (clamped)."""
    return round(min(max(score, 0.0), 1.0) * MILLI)


@dataclass(slots=True)
class QualityTally:
    """One dimension value's quality counts (additive over days and items)."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    score_milli: int = 0
    reference_milli: int = 0
    saved: int = 0
    feedback: int = 0
    feedback_milli: int = 0

    @property
    def samples(self) -> int:
        return self.wins + self.ties + self.losses

    def add(self, other: QualityTally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def row(self) -> dict[str, Any]:
        """For JSON: counts, rates with 95% Wilson intervals (null without samples), average
        scores, the average saving per judged request (µ$), feedback average."""
        n = self.samples
        return {
            "samples": n,
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "loss_rate": round(self.losses / n, 4) if n else None,
            "loss_rate_ci": wilson(self.losses, n),
            "not_worse_rate": round((self.wins + self.ties) / n, 4) if n else None,
            "not_worse_ci": wilson(self.wins + self.ties, n),
            "score": round(self.score_milli / MILLI / n, 4) if n else None,
            "reference_score": round(self.reference_milli / MILLI / n, 4) if n else None,
            "saved_per_request_micro_usd": round(self.saved / n) if n else None,
            "feedback": self.feedback,
            "feedback_score": (
                round(self.feedback_milli / MILLI / self.feedback, 4) if self.feedback else None
            ),
        }


def wilson(successes: int, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of a proportion (sound at small n and at 0 or n successes)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return [round(max(centre - half, 0.0), 4), round(min(centre + half, 1.0), 4)]


QualityResults = dict[str, dict[str, QualityTally]]
"""dimension -> value -> its tally."""


@dataclass(slots=True)
class QualityDay:
    """One day's quality item(s), summed."""

    day: str
    judged: int = 0
    judge_failed: int = 0
    judge_skipped: int = 0
    judge_cost: int = 0
    results: QualityResults | None = None

    def as_dict(self) -> dict[str, Any]:
        results = self.results or {}
        return {
            "day": self.day,
            "judged": self.judged,
            "judge_failed": self.judge_failed,
            "judge_skipped": self.judge_skipped,
            "judge_cost_micro_usd": self.judge_cost,
            **{
                dim: {name: tally.row() for name, tally in sorted(values.items())}
                for dim, values in results.items()
            },
        }


def summarize(day: str, items: Iterable[Mapping[str, Any]]) -> QualityDay:
    """Sum quality items (unknown fields are ignored: a newer writer's)."""
    out = QualityDay(day, results={dim: {} for dim in DIMENSIONS})
    assert out.results is not None
    for item in items:
        for name, value in item.items():
            if type(value) is not int:
                continue
            if name in PLAIN:
                setattr(out, name, getattr(out, name) + value)
                continue
            parsed = parse_field(name)
            if parsed is None:
                continue
            kind, value_name = parsed
            dim, _, suffix = kind.partition("_")
            attr = SUFFIXES.get(suffix)
            if dim not in out.results or attr is None:
                continue
            tally = out.results[dim].setdefault(value_name, QualityTally())
            setattr(tally, attr, getattr(tally, attr) + value)
    return out


def verdict_deltas(
    dims: Mapping[str, str], verdict: Verdict, score: float, reference_score: float, saved: int | None
) -> dict[str, int]:
    """The fields one judgement adds on each of its dimension values (pure)."""
    deltas: dict[str, int] = {"judged": 1}
    for dim, name in dims.items():
        _put(deltas, f"{dim}_{verdict.value}", name, 1)
        _put(deltas, f"{dim}_qs", name, milli(score))
        _put(deltas, f"{dim}_qr", name, milli(reference_score))
        if saved:
            _put(deltas, f"{dim}_sav", name, saved)
    return deltas


def feedback_deltas(dims: Mapping[str, str], score: float) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for dim, name in dims.items():
        _put(deltas, f"{dim}_fbn", name, 1)
        _put(deltas, f"{dim}_fbs", name, milli(score))
    return deltas


def _put(deltas: dict[str, int], kind: str, name: str, value: int) -> None:
    if value:
        key = field_name(kind, name)
        deltas[key] = deltas.get(key, 0) + value


def item_key(day: str) -> str:
    return f"{PREFIX}{day}"


def item_expiry(day: str, retention_days: int, day_start_hour: int = 0) -> float:
    return day_end(day, day_start_hour) + retention_days * DAY_S
