"""Which answered requests are judged: a rate and a reference tier per rule, fixed at init.

    sampling = Sampling.of(rules.spec)       # None: nothing is ever sampled
    reference = sampling.pick(decision)      # at admission: the reference tier, or None

A rule's `quality: {sample, reference}` overrides the file's `quality.sample` / `reference`
for the requests it routes; a request no rule routed (the default tier, or one naming a tier
or a model) uses the file's. A request is eligible when it has a tier (not one naming a
model) other than its reference, and was not served from the cache (the caller picks after
the cache lookup). A picked request is judged only if it ends answered with text in its
first choice, by a tier other than the reference (a cascade may have escalated it there).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tier_router.routing.engine import Decision

if TYPE_CHECKING:
    from tier_router.schema.rules_file import RulesFile


@dataclass(frozen=True, slots=True)
class Plan:
    rate: float
    reference: str | None


@dataclass(slots=True)
class Sampled:
    """On the exchange of a request picked for judging (`Exchange.sampled`)."""

    reference: str
    body: dict[str, Any]
    answer: str | None = None
    """A non-streamed answer's text (`judge.answer_text`), kept when it is served; a stream's
    is read from its state when the request finishes."""


class Sampling:
    def __init__(self, default: Plan, rules: dict[str, Plan], draw: Callable[[], float] = random.random):
        self.default = default
        self.rules = rules
        """Rule name -> its plan (only rules with their own `quality:`)."""
        self.draw = draw

    @classmethod
    def of(cls, spec: RulesFile) -> Sampling | None:
        quality = spec.quality
        if quality.judge is None:
            return None
        default = Plan(quality.sample, quality.reference)
        rules = {
            rule.name: Plan(
                quality.sample if rule.quality.sample is None else rule.quality.sample,
                rule.quality.reference or quality.reference,
            )
            for rule in spec.rules
            if rule.quality is not None
        }
        if not any(p.rate > 0 and p.reference for p in (default, *rules.values())):
            return None
        return cls(default, rules)

    def plan(self, decision: Decision) -> Plan:
        if decision.rule_name is None:
            return self.default
        return self.rules.get(decision.rule_name, self.default)

    def pick(self, decision: Decision) -> str | None:
        """The reference tier when this request is sampled, else None."""
        tier = decision.tier
        if tier is None:
            return None
        plan = self.plan(decision)
        if plan.rate <= 0 or plan.reference is None or plan.reference == tier:
            return None
        return plan.reference if self.draw() < plan.rate else None
