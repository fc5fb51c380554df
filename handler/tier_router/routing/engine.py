"""The decision engine: one chat request (+ headers) in, one immutable `Decision` out.

Everything that can be done once is done by `routing.loader` when the rules file loads:
model routes are shared frozen objects, conditions are compiled predicates, regexes live
in RE2 sets. `Rules.decide` only measures the request and walks the rules in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from tier_router.errors import RequestError
from tier_router.routing.conditions import Context, Predicate, RegexSets
from tier_router.routing.features import Features, measure
from tier_router.routing.request import Chat
from tier_router.schema import PRIORITIES, Price, Priority, Provider, Retry, RulesFile, Timeouts

AUTO = "auto"
DEFAULT_RETRY = Retry()
DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """A model as the forwarder needs it: where to send it and what it costs."""

    name: str
    provider_name: str
    provider: Provider
    model_id: str
    price: Price
    context_window: int | None
    max_output: int | None
    retry: Retry = DEFAULT_RETRY
    """Same-model retries: the provider's, with the model's override applied."""
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    """The provider's timeouts, with the model's override applied."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "provider": self.provider_name,
            "provider_kind": self.provider.kind,
            "provider_model_id": self.model_id,
            "price_per_1m": self.price.model_dump(exclude_none=True),
            "context_window": self.context_window,
        }


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    tier: str
    predicate: Predicate
    priority: Priority | None


class DecisionKind(StrEnum):
    """How the tier was chosen."""

    AUTO = "auto"
    """`model: auto` (or an alias of it) and a rule matched: `Decision.rule_name` names it."""
    DEFAULT = "default"
    """`model: auto` and no rule matched: the rules file's `default_tier`."""
    EXPLICIT = "explicit"
    """The request named a tier or a model (or an alias of one)."""


@dataclass(frozen=True, slots=True)
class Decision:
    requested_model: str
    tier: str | None
    kind: DecisionKind
    rule_name: str | None
    """The matching rule's name when `kind` is AUTO, else None."""
    why: str
    candidates: tuple[ModelRoute, ...]
    priority: Priority
    priority_source: str
    features: Features
    skipped: tuple[tuple[str, str], ...] = field(default=())
    """Candidates dropped before forwarding, with the reason (e.g. context window too small)."""

    @property
    def label(self) -> str:
        """For people (logs, headers, the ledger's per-rule totals, explain): the rule's name,
        or "default" / "explicit". A rule may itself be called that, so decide nothing by
        comparing labels: use `kind` and `rule_name`."""
        return self.rule_name if self.rule_name is not None else self.kind.value

    def as_dict(self) -> dict[str, Any]:
        """What explain shows (no prompt text: features are measurements)."""
        told = ("requested_model", "tier", "why", "priority", "priority_source")
        data: dict[str, Any] = {name: getattr(self, name) for name in told}
        data.update(kind=self.kind.value, rule=self.label)
        data["chain"] = [route.as_dict() for route in self.candidates]
        data["skipped"] = [{"model": name, "reason": reason} for name, reason in self.skipped]
        data["features"] = self.features.as_dict()
        return data


class UnknownModelError(RequestError, LookupError):
    """The request named a model that is neither `auto`, a tier, an alias nor a model."""

    def __init__(self, requested: str, valid: list[str]) -> None:
        self.requested = requested
        self.valid = valid
        super().__init__(
            f"The model {requested!r} does not exist on this router. Use one of: {', '.join(valid)}."
        )


@dataclass(frozen=True, slots=True)
class Target:
    """What a requested model name resolves to, precomputed for every valid name."""

    kind: str  # "auto" | "tier" | "model"
    tier: str | None
    chain: tuple[ModelRoute, ...]


@dataclass(eq=False)
class Rules:
    """A loaded, validated and compiled rules file (built by `routing.loader`). Not to be
    changed once built; safe to share across requests."""

    spec: RulesFile
    source: Path | None
    routes: dict[str, ModelRoute]
    tiers: dict[str, tuple[ModelRoute, ...]]
    rules: tuple[CompiledRule, ...]
    sets: RegexSets
    targets: dict[str, Target]
    """Every name a request may use (auto, tiers, models, aliases), resolved once."""

    def __post_init__(self) -> None:
        self.default_tier = self.spec.default_tier
        self.priority_spec = self.spec.priority
        header = self.spec.priority.header
        self.priority_header = header.lower() if header else None
        self.valid_names = sorted(self.targets)

    def decide(self, request: Chat, headers: Mapping[str, str] | None = None) -> Decision:
        """Route one request. `headers` must have lower-case names (ASGI gives them so)."""
        features = measure(request, headers or {})
        target = self.targets.get(request.model)
        if target is None:
            raise UnknownModelError(request.model, self.valid_names)
        if target.kind == AUTO:
            return self._by_rules(request.model, features)
        what = "tier" if target.kind == "tier" else "model"
        priority, source = self._priority(features, None)
        return self._finish(
            request.model,
            target.tier,
            DecisionKind.EXPLICIT,
            None,
            f"request named {what} {request.model!r}",
            target.chain,
            priority,
            source,
            features,
        )

    def retier(self, decision: Decision, tier: str, why: str) -> Decision:
        """The same decision moved to another tier (budget pacing, the cap's fallback tier)."""
        candidates, skipped = fit_context(self.tiers[tier], decision.features)
        return replace(
            decision, tier=tier, why=f"{decision.why}; then {why}", candidates=candidates, skipped=skipped
        )

    def _by_rules(self, requested: str, features: Features) -> Decision:
        ctx = Context(features, self.sets)
        for rule in self.rules:
            if rule.predicate.test(ctx):
                priority, source = self._priority(features, rule.priority)
                why = "; ".join(rule.predicate.why(ctx))
                return self._finish(
                    requested,
                    rule.tier,
                    DecisionKind.AUTO,
                    rule.name,
                    why,
                    self.tiers[rule.tier],
                    priority,
                    source,
                    features,
                )
        priority, source = self._priority(features, None)
        return self._finish(
            requested,
            self.default_tier,
            DecisionKind.DEFAULT,
            None,
            "no rule matched",
            self.tiers[self.default_tier],
            priority,
            source,
            features,
        )

    def _priority(self, features: Features, rule_priority: Priority | None) -> tuple[Priority, str]:
        spec = self.priority_spec
        if self.priority_header:
            value = features.headers.get(self.priority_header)
            if value is not None and value.lower() in PRIORITIES:
                return value.lower(), "header"  # type: ignore[return-value]
        if spec.metadata_key:
            value = features.metadata.get(spec.metadata_key)
            if value is not None and value.lower() in PRIORITIES:
                return value.lower(), "metadata"  # type: ignore[return-value]
        if rule_priority is not None:
            return rule_priority, "rule"
        return spec.default, "default"

    @staticmethod
    def _finish(
        requested: str,
        tier: str | None,
        kind: DecisionKind,
        rule_name: str | None,
        why: str,
        chain: tuple[ModelRoute, ...],
        priority: Priority,
        priority_source: str,
        features: Features,
    ) -> Decision:
        candidates, skipped = fit_context(chain, features)
        return Decision(
            requested_model=requested,
            tier=tier,
            kind=kind,
            rule_name=rule_name,
            why=why,
            candidates=candidates,
            priority=priority,
            priority_source=priority_source,
            features=features,
            skipped=skipped,
        )


def fit_context(
    chain: tuple[ModelRoute, ...], features: Features
) -> tuple[tuple[ModelRoute, ...], tuple[tuple[str, str], ...]]:
    """Drop models whose context window cannot hold the conversation plus the requested output.

    The token count is an estimate, so this only removes models that are clearly too small;
    if it would remove every model, the chain is kept whole and the providers decide.
    """
    needed = features.conversation_tokens + (features.max_tokens or 0)
    if all(route.context_window is None or route.context_window >= needed for route in chain):
        return chain, ()
    kept = tuple(r for r in chain if r.context_window is None or r.context_window >= needed)
    if not kept:
        return chain, ()
    skipped = tuple(
        (r.name, f"context window {r.context_window} < ~{needed} tokens needed")
        for r in chain
        if r not in kept
    )
    return kept, skipped
