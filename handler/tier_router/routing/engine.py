"""The decision engine: one chat request (+ headers, + the router key's name) in, one
immutable `Decision` out.

Everything that can be done once is done by `routing.loader` when the rules file loads:
model routes are shared frozen objects, conditions are compiled predicates, regexes live
in RE2 sets, weighted splits are precomputed chains (`splits`), rule gates (`experiments`)
and cascades (`cascades`) are compiled objects. `Rules.decide` measures the request, reads
its sticky id once (`sticky`), and walks the rules in order.

Explicit requests: `model: <tier>` (or an alias of one) gets the tier's weighted split and
the tier's cascade, like a routed request. `model: <model>` gets neither: the client chose
the model (its chain is the model, then the rest of its tier in the file's order), so no
split reorders it and no cascade replaces its answer with another tier's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tier_router.routing.conditions import Context, Predicate, RegexSets
from tier_router.routing.errors import UnknownModelError, WrongKindError
from tier_router.routing.experiments import Exposure, Gate
from tier_router.routing.features import Features, measure
from tier_router.routing.request import Chat
from tier_router.routing.routes import Chain, ModelRoute, fit_context
from tier_router.routing.splits import Split
from tier_router.routing.sticky import NO_STICKY, NOT_READ, Sticky, StickySources
from tier_router.schema.units import PRIORITIES

if TYPE_CHECKING:
    from tier_router.routing.stickiness import Placement
    from tier_router.schema import Priority, RulesFile
    from tier_router.validators import Cascade

__all__ = [
    "AUTO",
    "CompiledRule",
    "Decision",
    "DecisionKind",
    "ModelRoute",
    "Rules",
    "Target",
    "UnknownModelError",
    "WrongKindError",
    "fit_context",
]

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    tier: str
    predicate: Predicate
    priority: Priority | None
    gate: Gate | None = None
    """`arm:` / `rollout:`: checked after the condition held."""
    cascade: Cascade | None = None
    """The rule's own `cascade:` (replaces the tier's for the requests it routes)."""


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
    cascade: Cascade | None = None
    """What happens when the answer fails validation: the matched rule's cascade if it has
    one, else the tier's; None for a request naming a model, or a tier without a cascade."""
    experiment: str | None = None
    """The experiment this request was exposed to ("rollout:<rule>" for a rollout), if any."""
    arm: str | None = None
    """Its arm in `experiment` ("in" / "out" for a rollout)."""
    sticky: str = NO_STICKY
    """Which `routing.sticky` source gave the sticky id ("header:x", "user", "metadata:k",
    "key"); "none": no source was present, the request was placed at random; "unused": the
    rules file places nothing by sticky id (no weighted tier, rollout or experiment)."""
    split: str | None = None
    """The tier's weighted pick, for people: "deepseek-chat: 90% of tier 'standard' by weight"."""
    sticky_digest: bytes = field(default=b"", repr=False)
    """blake2b of the sticky id (never the id): re-applies splits on `retier` / `escalate`."""
    prompt_cache: int | None = None
    """`prompt_cache.min_tokens` for this tier and rule; None: no automatic cache breakpoints."""
    conversation: Placement | None = None
    """Where sticky conversations placed it (`routing.stickiness.follow`); None: not a conversation's."""

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
        data["cascade"] = cascade_dict(self.cascade)
        data.update(experiment=self.experiment, arm=self.arm, sticky=self.sticky, split=self.split)
        data["conversation"] = self.conversation.as_dict() if self.conversation is not None else None
        data["prompt_cache"] = None if self.prompt_cache is None else {"min_tokens": self.prompt_cache}
        return data


def cascade_dict(cascade: Cascade | None) -> dict[str, Any] | None:
    if cascade is None:
        return None
    return {
        "to": cascade.to,
        "on": [check.name for check in cascade.checks],
        "stream": "hold" if cascade.hold_stream else "pass",
        "source": cascade.source,
    }


@dataclass(frozen=True, slots=True)
class Target:
    """What a requested model name resolves to, precomputed for every valid name."""

    kind: str  # "auto" | "tier" | "model"
    tier: str | None
    chain: Chain
    embedding: bool = False
    """An embedding tier or model (served by POST /v1/embeddings only)."""


@dataclass(eq=False)
class Rules:
    """A loaded, validated and compiled rules file (built by `routing.loader`). Not to be
    changed once built; safe to share across requests."""

    spec: RulesFile
    source: Path | None
    routes: dict[str, ModelRoute]
    tiers: dict[str, Chain]
    """Each tier's whole chain in the file's order (weighted entries included)."""
    rules: tuple[CompiledRule, ...]
    sets: RegexSets
    targets: dict[str, Target]
    """Every name a request may use (auto, tiers, models, aliases), resolved once."""
    splits: dict[str, Split] = field(default_factory=dict)
    """Weighted tiers' splits (tiers without weights have none)."""
    cascades: dict[str, Cascade] = field(default_factory=dict)
    """Tier → its own cascade (tiers without one are absent)."""
    embedding_rules: tuple[CompiledRule, ...] = ()
    """The `embeddings:` section's rules (`decide_embedding`)."""

    def __post_init__(self) -> None:
        self.default_tier = self.spec.default_tier
        self.priority_spec = self.spec.priority
        header = self.spec.priority.header
        self.priority_header = header.lower() if header else None
        self.valid_names = sorted(self.targets)
        self.sticky_sources = StickySources(self.spec.routing.sticky)
        self.prompt_cache = self.spec.prompt_cache if self.spec.prompt_cache.used else None  # None: off
        self.uses_sticky = bool(self.splits) or any(
            rule.gate is not None for rule in (*self.rules, *self.embedding_rules)
        )
        section = self.spec.embeddings
        self.embedding_default_tier = section.default_tier if section is not None else None
        self.embedding_tiers = frozenset(t for t in self.tiers if self.targets[t].embedding)
        self.rule_cascades = {rule.name: rule.cascade for rule in self.rules if rule.cascade is not None}

    def same_kind(self, tier: str | None, other: str | None) -> bool:
        """Both chat tiers or both embedding tiers: a decision may move from one to the other."""
        return (tier in self.embedding_tiers) == (other in self.embedding_tiers)

    def decide(
        self, request: Chat, headers: Mapping[str, str] | None = None, key: str | None = None
    ) -> Decision:
        """Route one request. `headers` must have lower-case names (ASGI gives them so); `key`
        is the router key's name (a `routing.sticky` source)."""
        features = measure(request, headers or {})
        target = self.targets.get(request.model)
        if target is None:
            raise UnknownModelError(request.model, self.valid_names)
        if target.embedding:
            raise WrongKindError(request.model, "chat completions", "embedding")
        return self._decide(request.model, target, features, key)

    def decide_embedding(self, model: str, features: Features, key: str | None = None) -> Decision:
        """Route one embeddings request (its input measured by `features.measure_input`):
        `auto` by the `embeddings:` section's rules, else the embedding tier or model named."""
        target = self.targets.get(model)
        if target is None:
            raise UnknownModelError(model, self.valid_names)
        if target.kind == AUTO and self.embedding_default_tier is None:
            names = [n for n, t in self.targets.items() if t.embedding]  # no section: name one of these
            listed = f": {', '.join(names)}" if names else " (it has none)"
            message = "This router routes no embeddings by rules (its rules have no `embeddings:` section)"
            raise UnknownModelError(model, names, f"{message}: name an embedding tier or model{listed}.")
        if target.kind != AUTO and not target.embedding:
            raise WrongKindError(model, "embeddings", "chat")
        return self._decide(model, target, features, key, embedding=True)

    def _decide(
        self, model: str, target: Target, features: Features, key: str | None, *, embedding: bool = False
    ) -> Decision:
        sticky = self.sticky_sources.read(features, key) if self.uses_sticky else NOT_READ
        if target.kind == AUTO:
            if embedding:
                rules, default = self.embedding_rules, self.embedding_default_tier
                return self._by_rules(model, features, sticky, rules, default)  # type: ignore[arg-type]
            return self._by_rules(model, features, sticky, self.rules, self.default_tier)
        priority, source = self._priority(features, None)
        if target.kind == "tier":
            chain, split = self._tier_chain(target.tier, sticky.digest)  # type: ignore[arg-type]
            cascade = self.cascades.get(target.tier)  # type: ignore[arg-type]
        else:
            chain, split, cascade = target.chain, None, None
        what = "tier" if target.kind == "tier" else "model"
        return self._finish(
            model,
            target.tier,
            DecisionKind.EXPLICIT,
            None,
            f"request named {what} {model!r}",
            chain,
            priority,
            source,
            features,
            sticky,
            split,
            cascade,
            None,
        )

    def prompt_cache_for(self, tier: str | None, rule: str | None) -> int | None:
        return None if self.prompt_cache is None else self.prompt_cache.min_tokens_for(tier, rule)

    def retier(self, decision: Decision, tier: str, why: str) -> Decision:
        """The same decision moved to another tier (budget pacing, the cap's fallback tier,
        a key's allowed tiers): the new tier's split, by the same sticky id, and the new
        tier's cascade — except that a rule's own cascade is kept while its `to` is not the
        new tier (the rule asked for its requests to be validated, whichever tier answers),
        and a request that named a model stays without one."""
        chain, split = self._tier_chain(tier, decision.sticky_digest)
        candidates, skipped = fit_context(chain, decision.features)
        cascade = decision.cascade
        from_rule = cascade is not None and cascade is self.rule_cascades.get(decision.rule_name or "")
        if not (from_rule and cascade.to != tier):  # type: ignore[union-attr]
            target = self.targets.get(decision.requested_model)
            cascade = None if target is not None and target.kind == "model" else self.cascades.get(tier)
        return replace(
            decision,
            tier=tier,
            why=f"{decision.why}; then {why}",
            candidates=candidates,
            skipped=skipped,
            split=split,
            cascade=cascade,
            prompt_cache=self.prompt_cache_for(tier, decision.rule_name),
        )

    def escalate(self, decision: Decision, failure_text: str) -> Decision:
        """The decision sent on to its cascade's `to` tier after a failed validation: that
        tier's split (same sticky id) and that tier's own cascade. `failure_text` (e.g.
        `Failure.header()`) must hold no prompt or answer text: it goes into `why`."""
        if decision.cascade is None:
            raise ValueError("the decision has no cascade to escalate along")
        tier = decision.cascade.to
        chain, split = self._tier_chain(tier, decision.sticky_digest)
        candidates, skipped = fit_context(chain, decision.features)
        return replace(
            decision,
            tier=tier,
            why=f"{decision.why}; escalated: {failure_text}",
            candidates=candidates,
            skipped=skipped,
            split=split,
            cascade=self.cascades.get(tier),
            prompt_cache=self.prompt_cache_for(tier, decision.rule_name),
        )

    def cascade_path(self, decision: Decision) -> tuple[Chain, ...]:
        """The candidate chains (after `fit_context`) of every escalation the decision could
        take, in order: its cascade's `to` tier, then that tier's cascade's, and so on (the
        loader rejects cycles). Empty without a cascade. The decision's own candidates are
        not included. For the budget reservation."""
        path: list[Chain] = []
        cascade = decision.cascade
        seen: set[str] = set()
        while cascade is not None and cascade.to not in seen:
            seen.add(cascade.to)
            chain, _ = self._tier_chain(cascade.to, decision.sticky_digest)
            path.append(fit_context(chain, decision.features)[0])
            cascade = self.cascades.get(cascade.to)
        return tuple(path)

    def _tier_chain(self, tier: str, digest: bytes) -> tuple[Chain, str | None]:
        """The tier's chain for this sticky digest: its split's pick first, if it has a split."""
        split = self.splits.get(tier)
        if split is None:
            return self.tiers[tier], None
        return split.pick(digest)

    def _by_rules(
        self,
        requested: str,
        features: Features,
        sticky: Sticky,
        rules: tuple[CompiledRule, ...],
        default_tier: str,
    ) -> Decision:
        ctx = Context(features, self.sets)
        exposure: Exposure | None = None
        for rule in rules:
            if not rule.predicate.test(ctx):
                continue
            if rule.gate is not None:
                admitted, seen = rule.gate.admit(sticky.digest)
                if exposure is None:
                    exposure = seen
                if not admitted:
                    continue
            priority, source = self._priority(features, rule.priority)
            why = "; ".join(rule.predicate.why(ctx))
            if rule.gate is not None:
                why = f"{why}; {rule.gate.text}"
            chain, split = self._tier_chain(rule.tier, sticky.digest)
            return self._finish(
                requested,
                rule.tier,
                DecisionKind.AUTO,
                rule.name,
                why,
                chain,
                priority,
                source,
                features,
                sticky,
                split,
                rule.cascade or self.cascades.get(rule.tier),
                exposure,
            )
        priority, source = self._priority(features, None)
        chain, split = self._tier_chain(default_tier, sticky.digest)
        return self._finish(
            requested,
            default_tier,
            DecisionKind.DEFAULT,
            None,
            "no rule matched",
            chain,
            priority,
            source,
            features,
            sticky,
            split,
            self.cascades.get(default_tier),
            exposure,
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

    def _finish(
        self,
        requested: str,
        tier: str | None,
        kind: DecisionKind,
        rule_name: str | None,
        why: str,
        chain: Chain,
        priority: Priority,
        priority_source: str,
        features: Features,
        sticky: Sticky,
        split: str | None,
        cascade: Cascade | None,
        exposure: Exposure | None,
    ) -> Decision:
        candidates, skipped = fit_context(chain, features)
        return Decision(
            requested,
            tier,
            kind,
            rule_name,
            why,
            candidates,
            priority,
            priority_source,
            features,
            skipped,
            cascade,
            exposure.experiment if exposure is not None else None,
            exposure.arm if exposure is not None else None,
            sticky.source,
            split,
            sticky.digest,
            self.prompt_cache_for(tier, rule_name),
        )
