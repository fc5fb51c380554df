"""The policy search: the cheapest readable rules whose expected quality meets the target.

A policy is what the calibrated rules say, in order: requests whose last user message holds
one of `keywords` go to the best tier; then, cheapest tier first, requests whose length
feature is at most that tier's threshold go to it; the rest go to the best tier.

Quality of a policy on a set of examples: the sum over them of the score of the tier it
picks; an example that does not score the picked tier counts 0 (conservative: missing
evidence is not taken as success). The search (training examples only) sorts the examples
once into buckets of the feature (its distinct values, or quantiles past `cuts`), keeps
per-bucket sums of score and cost per tier, and tries every ordered tuple of thresholds on
prefix sums: the cost of a tuple is O(tiers), whatever the number of examples.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate, combinations_with_replacement

from tier_router.calibrate.data import has_word, is_keyword

FINE_COMBINATIONS = 40_000
"""Threshold tuples tried in the final search (per feature): sets the grid for 2+ cheaper tiers."""
COARSE_COMBINATIONS = 3_000
"""Threshold tuples per keyword candidate while keywords are chosen."""
KEYWORD_CANDIDATES = 12
KEYWORD_ROUNDS = 3
KEYWORD_GAIN = 0.01
"""A keyword is kept only when it lowers the training cost at the target by at least 1%."""
MIN_KEYWORD_SUPPORT = 10
"""A keyword must occur in at least this many training examples (and 0.2% of them)."""
MAX_KEYWORD_SHARE = 0.2
CANDIDATE_SAMPLE = 20_000
"""Keyword candidates are counted on at most this many training examples (evenly spread)."""


@dataclass(frozen=True, slots=True)
class Policy:
    feature: str
    steps: tuple[tuple[str, int], ...]
    """(cheaper tier, inclusive max of the feature), cheapest tier first, thresholds ascending."""
    best: str
    keywords: tuple[str, ...] = ()

    def pick(self, value: int, words: bytes | None) -> str:
        if self.keywords and words and any(has_word(words, k.encode()) for k in self.keywords):
            return self.best
        for tier, limit in self.steps:
            if value <= limit:
                return tier
        return self.best


@dataclass(slots=True)
class Problem:
    """The training examples as the search needs them (every one scores the best tier)."""

    lengths: dict[str, list[int]]
    scores: dict[str, list[float]]
    """Tier → score per example, a missing score as 0."""
    costs: dict[str, list[float]]
    best: str
    cheap: tuple[str, ...]
    """The tiers cheaper than the best one, cheapest first."""
    words: list[bytes] | None
    target: float

    @property
    def need(self) -> float:
        return self.target * math.fsum(self.scores[self.best]) - 1e-9


@dataclass(frozen=True, slots=True)
class Found:
    policy: Policy
    quality: float
    """Sum of scores over the training examples."""
    cost: float


class Grid:
    """One feature's buckets with per-tier sums of score and cost."""

    def __init__(self, problem: Problem, feature: str, combinations: int) -> None:
        self.problem = problem
        self.feature = feature
        self.tiers = (*problem.cheap, problem.best)
        values = problem.lengths[feature]
        self.cuts = cut_points(values, grid_size(len(problem.cheap), combinations))
        self.bucket = [bisect.bisect_left(self.cuts, v) for v in values]
        size = len(self.cuts)
        self.score_sums = {t: [0.0] * size for t in self.tiers}
        self.cost_sums = {t: [0.0] * size for t in self.tiers}
        for tier in self.tiers:
            scores, costs = problem.scores[tier], problem.costs[tier]
            score_sums, cost_sums = self.score_sums[tier], self.cost_sums[tier]
            for i, b in enumerate(self.bucket):
                score_sums[b] += scores[i]
                cost_sums[b] += costs[i]

    def search(self, excluded: Iterable[int] = ()) -> Found | None:
        """The cheapest feasible thresholds with the `excluded` examples sent to the best tier;
        None when only the best tier for everything meets the target."""
        problem, best = self.problem, self.problem.best
        score_sums = {t: list(v) for t, v in self.score_sums.items()}
        cost_sums = {t: list(v) for t, v in self.cost_sums.items()}
        fixed_q = fixed_c = 0.0
        for i in set(excluded):
            b = self.bucket[i]
            for tier in self.tiers:
                score_sums[tier][b] -= problem.scores[tier][i]
                cost_sums[tier][b] -= problem.costs[tier][i]
            fixed_q += problem.scores[best][i]
            fixed_c += problem.costs[best][i]
        qs = [list(accumulate(score_sums[t], initial=0.0)) for t in self.tiers]
        cs = [list(accumulate(cost_sums[t], initial=0.0)) for t in self.tiers]
        end = len(self.cuts)
        need = problem.need
        k = len(problem.cheap)
        found: tuple[float, float, tuple[int, ...]] | None = None
        for ends in combinations_with_replacement(range(end + 1), k):
            quality, cost, start = fixed_q, fixed_c, 0
            for j, stop in enumerate(ends):
                quality += qs[j][stop] - qs[j][start]
                cost += cs[j][stop] - cs[j][start]
                start = stop
            quality += qs[k][end] - qs[k][start]
            if quality < need:
                continue
            cost += cs[k][end] - cs[k][start]
            if found is None or cost < found[0] or (cost == found[0] and quality > found[1]):
                found = (cost, quality, ends)
        if found is None or not any(found[2]):
            return None
        steps, start = [], 0
        for tier, stop in zip(problem.cheap, found[2], strict=True):
            if stop > start:
                steps.append((tier, self.cuts[stop - 1]))
            start = stop
        return Found(Policy(self.feature, tuple(steps), best), found[1], found[0])


def grid_size(cheaper_tiers: int, combinations: int) -> int:
    """The most buckets (a power of two, at most 4096) whose threshold tuples fit the budget."""
    size = 4096
    while size > 2 and math.comb(size + cheaper_tiers, cheaper_tiers) > combinations:
        size //= 2
    return size


def cut_points(values: list[int], limit: int) -> list[int]:
    """Ascending bucket upper bounds: every distinct value, or `limit` quantiles of them."""
    distinct = sorted(set(values))
    if len(distinct) <= limit:
        return distinct
    ordered = sorted(values)
    n = len(ordered)
    cuts = sorted({ordered[min(n - 1, (j * n) // limit)] for j in range(1, limit)} | {ordered[-1]})
    return cuts


def search(problem: Problem) -> Found | None:
    """The cheapest feasible policy over every length feature, with keywords if they pay."""
    plain = cheapest(Grid(problem, f, FINE_COMBINATIONS).search() for f in problem.lengths)
    if problem.words is None:
        return plain
    keywords, excluded = choose_keywords(problem, plain)
    if not keywords:
        return plain
    with_words = cheapest(Grid(problem, f, FINE_COMBINATIONS).search(excluded) for f in problem.lengths)
    if with_words is None or (plain is not None and with_words.cost >= plain.cost):
        return plain
    policy = with_words.policy
    return Found(
        Policy(policy.feature, policy.steps, policy.best, tuple(sorted(keywords))),
        with_words.quality,
        with_words.cost,
    )


def cheapest(results: Iterable[Found | None]) -> Found | None:
    found = [r for r in results if r is not None]
    return min(found, key=lambda r: (r.cost, -r.quality)) if found else None


def choose_keywords(problem: Problem, plain: Found | None) -> tuple[list[str], set[int]]:
    """Greedy: up to KEYWORD_ROUNDS words, each the candidate that lowers the (coarse) training
    cost at the target most, kept while it lowers it by KEYWORD_GAIN or more."""
    words = problem.words
    assert words is not None
    feature = plain.policy.feature if plain else next(iter(problem.lengths))
    grid = Grid(problem, feature, COARSE_COMBINATIONS)
    current = grid.search()
    current_cost = current.cost if current else math.fsum(problem.costs[problem.best])
    chosen: list[str] = []
    excluded: set[int] = set()
    candidates = keyword_candidates(problem, plain)
    for _ in range(KEYWORD_ROUNDS):
        trials = []
        for word, indices in candidates.items():
            if word in chosen:
                continue
            result = grid.search(excluded | indices)
            if result is not None:
                trials.append((result.cost, word))
        if not trials:
            break
        cost, word = min(trials)
        if cost > current_cost * (1 - KEYWORD_GAIN):
            break
        chosen.append(word)
        excluded |= candidates[word]
        current_cost = cost
    return chosen, excluded


def keyword_candidates(problem: Problem, plain: Found | None) -> dict[str, set[int]]:
    """Words whose presence makes the cheapest tier fall behind the best tier more often than
    elsewhere, among the requests a length rule sends to a cheaper tier (the plain policy's,
    or the shorter half when there is none): where a keyword can change what happens."""
    words = problem.words
    assert words is not None
    best, cheapest_tier = problem.scores[problem.best], problem.scores[problem.cheap[0]]
    lengths = problem.lengths[plain.policy.feature if plain else next(iter(problem.lengths))]
    if plain is not None:
        routed = [i for i, v in enumerate(lengths) if plain.policy.pick(v, None) != problem.best]
    else:
        routed = sorted(range(len(lengths)), key=lengths.__getitem__)[: len(lengths) // 2]
    if not routed:
        return {}
    total_gap = math.fsum(best[i] - cheapest_tier[i] for i in routed)
    overall = total_gap / len(routed)
    if len(routed) > CANDIDATE_SAMPLE:  # an even spread: the counts only rank candidates
        step = len(routed) / CANDIDATE_SAMPLE
        routed = [routed[int(j * step)] for j in range(CANDIDATE_SAMPLE)]
    support: Counter[bytes] = Counter()
    gaps: Counter[bytes] = Counter()
    for i in routed:
        distinct = set(words[i].split())
        support.update(distinct)
        gap = best[i] - cheapest_tier[i]
        if gap > 0:
            for word in distinct:
                gaps[word] += gap
    low, high = max(MIN_KEYWORD_SUPPORT, int(0.002 * len(routed))), int(MAX_KEYWORD_SHARE * len(routed))
    ranked = sorted(
        (gaps[w] / count, w)
        for w, count in support.items()
        if low <= count <= high and w in gaps and is_keyword(w)
    )
    top = [w for mean_gap, w in reversed(ranked) if mean_gap > max(2 * overall, overall + 0.1)]
    needles = {w.decode(): b" " + w + b" " for w in top[:KEYWORD_CANDIDATES]}  # as `has_word`
    return {word: {i for i, text in enumerate(words) if needle in text} for word, needle in needles.items()}
