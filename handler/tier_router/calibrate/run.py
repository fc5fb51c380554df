"""One calibration: labels and a rules file in, a policy and its held-out figures out (or Refused).

Steps: read the labels (features measured as the router measures them); split them at random
(`seed`) into training and held-out parts; on the training part only, pick the best tier
(highest mean score; the dearer on a tie), the tiers cheaper than it (by expected cost per
request), and the cheapest policy that meets `target` × the best tier's quality; then measure
that policy on the held-out part.

Refusals (nothing is written):
- `target` not in (0, 1]: above 1 no policy can beat always using the best tier;
- fewer than MIN_TIER_LABELS training labels scoring the best tier, or no cheaper tier with
  that many; fewer than MIN_HOLDOUT held-out labels;
- no policy but "the best tier for everything" meets the target on the training part;
- the held-out check fails badly: the upper end of the 95% interval of the held-out relative
  quality is more than HOLDOUT_TOLERANCE below the target (the data show, with confidence,
  that the rules miss it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from tier_router.calibrate.costs import tier_costs
from tier_router.calibrate.data import Examples, load_examples
from tier_router.calibrate.evaluate import Figures, evaluate
from tier_router.calibrate.policy import Found, Problem, search
from tier_router.calibrate.refusal import Refused
from tier_router.routing.engine import Rules

MIN_TIER_LABELS = 50
"""Training labels that must score a tier for it to be used (the best tier and each cheaper one)."""
MIN_HOLDOUT = 30
HOLDOUT_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class Calibration:
    found: Found
    labels: int
    """Usable labels read (each scores the best tier)."""
    train: Figures
    held_out: Figures
    target: float
    tiers: tuple[str, ...]
    """Tiers considered, cheapest first (the best tier last)."""
    costs_per_request: dict[str, float]
    """Each tier's mean expected cost per request on the training part."""
    left_out: dict[str, str]
    """Tiers of the labels not used, with the reason."""


def calibrate(labels: Path, rules: Rules, target: float, holdout: float, seed: int | None) -> Calibration:
    if not (0 < target <= 1) or math.isnan(target):
        raise Refused(
            f"target {target} is unreachable: it must be more than 0 and at most 1 "
            "(1 = as good as always using the best tier; no policy can beat that)"
        )
    if not (0 < holdout < 1):
        raise Refused(f"--holdout {holdout}: give the held-out share, more than 0 and less than 1")
    examples = load_examples(labels, tuple(rules.tiers))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    cut = round(len(order) * holdout)
    held, train = examples.subset(sorted(order[:cut])), examples.subset(sorted(order[cut:]))
    train_costs = tier_costs(train, rules)
    mean_cost = {t: math.fsum(c) / len(c) for t, c in train_costs.items()} if len(train) else {}
    scored = {t: [s for s in train.scores[t] if s is not None] for t in train.tiers}
    left_out = {
        t: f"{len(s)} training labels score it (at least {MIN_TIER_LABELS} needed)"
        for t, s in scored.items()
        if len(s) < MIN_TIER_LABELS
    }
    usable = [t for t in train.tiers if t not in left_out]
    if not usable:
        raise Refused(
            f"too few labels: each tier used needs at least {MIN_TIER_LABELS} training labels scoring it; "
            + "; ".join(f"{t}: {len(scored[t])}" for t in train.tiers)
            + f" (of {len(examples)} labels, {len(held)} held out)"
        )
    best = max(usable, key=lambda t: (math.fsum(scored[t]) / len(scored[t]), mean_cost[t]))
    if not math.fsum(scored[best]):
        raise Refused(
            f"every training label scores every tier 0 (the best, {best!r}, included): there is no "
            "quality to keep a share of; check how the labels were scored"
        )
    cheap = tuple(sorted((t for t in usable if mean_cost[t] < mean_cost[best]), key=mean_cost.__getitem__))
    for tier in train.tiers:
        if tier not in left_out and tier != best and tier not in cheap:
            left_out[tier] = f"not cheaper than the best tier {best}"
    if not cheap:
        raise Refused(
            f"no tier cheaper than the best tier {best!r} has enough labels "
            f"(at least {MIN_TIER_LABELS} training labels scoring it): nothing to calibrate"
        )
    train, train_costs = keep_scored(train, best, train_costs)
    held = keep_scored(held, best, tier_costs(held, rules))[0]
    if len(held) < MIN_HOLDOUT:
        raise Refused(
            f"too few labels: {len(held)} held-out labels score {best!r}, at least {MIN_HOLDOUT} needed "
            "(more labels, or a larger --holdout)"
        )
    tiers = (*cheap, best)
    problem = Problem(
        train.lengths,
        {t: [s or 0.0 for s in train.scores[t]] for t in tiers},
        {t: train_costs[t] for t in tiers},
        best,
        cheap,
        train.words,
        target,
    )
    found = search(problem)
    if found is None:
        raise Refused(
            f"target {target} is unreachable on the training labels: no length threshold or keyword list "
            f"sending any traffic to {', '.join(cheap)} keeps the quality at {target:.1%} of {best!r}; "
            f"the only answer is to use {best!r} for everything"
        )
    train_figures = figures(found, train, train_costs)
    held_figures = figures(found, held, tier_costs(held, rules))
    if math.isnan(held_figures.relative.value):
        raise Refused(
            f"the held-out labels score {best!r} 0 on average: there is no quality to compare the rules "
            "with; collect more labels"
        )
    if held_figures.relative.high < target - HOLDOUT_TOLERANCE:
        relative = held_figures.relative
        raise Refused(
            f"the held-out check failed: the rules keep {relative.value:.1%} of {best!r}'s quality "
            f"on {held_figures.examples} held-out labels (95% interval up to {relative.high:.1%}), "
            f"below the target {target:.1%} by more than {HOLDOUT_TOLERANCE:.0%}: the training labels do not "
            "represent the rest; collect more labels"
        )
    return Calibration(
        found,
        len(train) + len(held),
        train_figures,
        held_figures,
        target,
        tiers,
        {t: mean_cost[t] for t in tiers},
        left_out,
    )


def keep_scored(examples: Examples, best: str, costs: dict[str, list[float]]) -> tuple[Examples, dict]:
    """Only the examples that score the best tier: the baseline needs its score."""
    keep = [i for i, s in enumerate(examples.scores[best]) if s is not None]
    return examples.subset(keep), {t: [c[i] for i in keep] for t, c in costs.items()}


def figures(found: Found, examples: Examples, costs: dict[str, list[float]]) -> Figures:
    policy = found.policy
    tiers = (*(tier for tier, _ in policy.steps), policy.best)
    return evaluate(
        policy,
        examples.lengths[policy.feature],
        examples.words,
        {t: examples.scores[t] for t in tiers},
        costs,
    )
