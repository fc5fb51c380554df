"""A policy's figures on a set of examples, with 95% normal intervals.

Quality (absolute): the mean score of the tier the policy picks (a missing score counts 0).
Relative quality: that sum over the sum of the best tier's scores — a ratio of means, its
interval by the delta method: var ≈ Σ(qᵢ − r·bᵢ)² / (Σb)². Cost ratio: the policy's expected
cost over always using the best tier, the same way. Shares: the traffic per tier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tier_router.calibrate.policy import Policy

Z95 = 1.959964


@dataclass(frozen=True, slots=True)
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class Figures:
    examples: int
    quality: Interval
    """Mean score of the picked tier (0..1)."""
    best_quality: float
    """Mean score of the best tier on the same examples."""
    relative: Interval
    """quality / best_quality."""
    cost_per_request: float
    best_cost_per_request: float
    cost_ratio: Interval
    """cost_per_request / best_cost_per_request."""
    shares: dict[str, float]
    unscored: int
    """Picks whose tier the label does not score (counted as 0)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "quality": self.quality.as_dict(),
            "best_quality": self.best_quality,
            "relative_quality": self.relative.as_dict(),
            "cost_per_request_usd": self.cost_per_request,
            "best_cost_per_request_usd": self.best_cost_per_request,
            "cost_ratio": self.cost_ratio.as_dict(),
            "shares": self.shares,
            "unscored_picks": self.unscored,
        }


def evaluate(
    policy: Policy,
    lengths: list[int],
    words: list[bytes] | None,
    scores: dict[str, list[float | None]],
    costs: dict[str, list[float]],
) -> Figures:
    """`lengths`: the policy's feature per example; every example scores the best tier."""
    n = len(lengths)
    best_scores = [float(s or 0.0) for s in scores[policy.best]]
    best_costs = costs[policy.best]
    picked_q: list[float] = []
    picked_c: list[float] = []
    counts = dict.fromkeys(scores, 0)
    unscored = 0
    for i, value in enumerate(lengths):
        tier = policy.pick(value, words[i] if words is not None else None)
        counts[tier] += 1
        score = scores[tier][i]
        if score is None:
            unscored += 1
        picked_q.append(score or 0.0)
        picked_c.append(costs[tier][i])
    quality = mean_interval(picked_q)
    return Figures(
        n,
        quality,
        math.fsum(best_scores) / n,
        ratio_interval(picked_q, best_scores),
        math.fsum(picked_c) / n,
        math.fsum(best_costs) / n,
        ratio_interval(picked_c, best_costs),
        {tier: count / n for tier, count in counts.items() if count},
        unscored,
    )


def mean_interval(values: list[float]) -> Interval:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    half = Z95 * math.sqrt(var / n)
    return Interval(mean, max(0.0, mean - half), min(1.0, mean + half))


def ratio_interval(numerators: list[float], denominators: list[float]) -> Interval:
    n = len(numerators)
    total = math.fsum(denominators)
    if total <= 0:
        return Interval(math.nan, math.nan, math.nan)
    ratio = math.fsum(numerators) / total
    residual = math.fsum((q - ratio * b) ** 2 for q, b in zip(numerators, denominators, strict=True))
    half = Z95 * math.sqrt(residual * n / max(n - 1, 1)) / total
    return Interval(ratio, max(0.0, ratio - half), ratio + half)
