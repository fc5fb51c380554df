"""Weighted tiers: which model a request gets first, by its sticky id.

    standard:
      models:
        - {model: deepseek-chat, weight: 90}   # 90% of sticky ids get deepseek-chat first
        - {model: small, weight: 10}           # 10% get small first
        - medium                               # unweighted: a fallback only

The pick goes first, then the rest of the tier in the file's order (weighted entries included:
they are each other's fallbacks). Weight 0 keeps a model in the chain but never first. A tier
without weights has no split: its chain is the file's order.

Everything is precomputed at load: per tier, each pick's whole chain and the bucket bounds of
the picks, so a request does one hash (`Salt.bucket`) and one bisect.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tier_router.routing.routes import Chain, ModelRoute
from tier_router.routing.sticky import Salt
from tier_router.schema.units import BUCKETS

if TYPE_CHECKING:
    from tier_router.schema.quality import TierSpec


@dataclass(frozen=True, slots=True, eq=False)
class Split:
    tier: str
    salt: Salt
    bounds: tuple[int, ...]
    """Exclusive upper bucket bound of each pick (the last is BUCKETS)."""
    chains: tuple[Chain, ...]
    """Each pick's chain: the pick, then the rest of the tier in order."""
    texts: tuple[str, ...]
    """Each pick, for explain: "deepseek-chat: 90% of tier 'standard' by weight"."""

    def pick(self, digest: bytes) -> tuple[Chain, str]:
        if len(self.chains) == 1:
            return self.chains[0], self.texts[0]
        i = bisect_right(self.bounds, self.salt.bucket(digest))
        return self.chains[i], self.texts[i]


def build_split(tier: str, spec: TierSpec, routes: dict[str, ModelRoute]) -> Split | None:
    """The tier's split, or None for a tier without weights (the loader has checked that a
    weighted tier has a positive weight, and that every model exists)."""
    if not spec.weighted:
        return None
    chain = tuple(routes[name] for name in spec.names)
    picks = [(entry.model, entry.weight) for entry in spec.models if entry.weight]
    total = sum(weight for _, weight in picks)
    bounds: list[int] = []
    chains: list[Chain] = []
    texts: list[str] = []
    running = 0
    for name, weight in picks:
        running += weight
        bounds.append(running * BUCKETS // total)
        first = routes[name]
        chains.append((first, *(route for route in chain if route is not first)))
        texts.append(f"{name}: {weight * 100 / total:.4g}% of tier {tier!r} by weight")
    return Split(tier, Salt("split", tier), tuple(bounds), tuple(chains), tuple(texts))


def split_problems(tier: str, spec: TierSpec) -> list[str]:
    """Reasons a weighted tier is unusable (prefixed by the loader with the tier)."""
    if spec.weighted and not any(entry.weight for entry in spec.models):
        return ["models: every weight is 0: give at least one model a positive weight"]
    return []
