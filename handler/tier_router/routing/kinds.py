"""Chat and embedding models in one rules file: each tier holds one kind, and every reference
to a tier or a model names one of the kind it needs.

    chat:       `default_tier`, `rules[].tier`, cascades' `to`, `quality.reference`,
                `quality.judge.model`, `providers.<p>.probe.model`, `budgets.on_cap`
    embedding:  `embeddings.default_tier`, `embeddings.rules[].tier`
    one kind:   every tier; both sides of a `budgets.pacing.downgrade` entry

An embedding model's provider must have an embeddings API (`providers.registry.EMBEDDINGS`:
an Anthropic provider has none). Embeddings rules may not use chat-only conditions, a
cascade or judging. `routing.loader` reports every problem found here with the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from tier_router.providers.registry import EMBEDDINGS
from tier_router.routing.problem import Problem, unknown
from tier_router.schema.units import CHAT_ONLY_CONDITIONS

if TYPE_CHECKING:
    from tier_router.schema import Condition, RulesFile

CHAT, EMBEDDING = "chat", "embedding"


def tier_kinds(spec: RulesFile) -> dict[str, str]:
    """Tier → the kind of its (known) models: "chat", "embedding", or "mixed"."""
    kinds = {}
    for tier, chain in spec.tiers.items():
        found = {spec.models[m].kind for m in chain if m in spec.models}
        kinds[tier] = found.pop() if len(found) == 1 else ("mixed" if found else CHAT)
    return kinds


def kind_problems(spec: RulesFile) -> Iterator[Problem]:
    models, providers = spec.models, spec.providers
    kinds = tier_kinds(spec)
    for name, model in models.items():
        provider = providers.get(model.provider)
        if model.kind == EMBEDDING and provider is not None and provider.kind not in EMBEDDINGS:
            yield Problem(
                f"model {name!r}: kind",
                f"provider {model.provider!r} (kind {provider.kind}) has no embeddings API;"
                f" embedding models need a provider of kind {' or '.join(sorted(EMBEDDINGS))}",
            )
    for tier, kind in kinds.items():
        if kind == "mixed":
            listed = ", ".join(f"{m} ({models[m].kind})" for m in spec.tiers[tier] if m in models)
            reason = f"mixes chat and embedding models ({listed}): a tier holds one kind"
            yield Problem(f"tier {tier!r}", reason)
        if kind == EMBEDDING and spec.tier_specs[tier].cascade is not None:
            yield Problem(f"tier {tier!r}: cascade", "an embedding tier has no cascade (nothing to validate)")

    def need(where: str, tier: str | None, want: str) -> Iterator[Problem]:
        if tier is not None and kinds.get(tier, want) not in (want, "mixed"):
            yield Problem(where, f"tier {tier!r} is an {kinds[tier]} tier; this needs a {want} tier")

    yield from need("default_tier", spec.default_tier, CHAT)
    for i, rule in enumerate(spec.rules):
        yield from need(f"rule {rule.name!r} (#{i + 1}): tier", rule.tier, CHAT)
        if rule.cascade is not None:
            yield from need(f"rule {rule.name!r} (#{i + 1}): cascade.to", rule.cascade.to, CHAT)
    for tier, tier_spec in spec.tier_specs.items():
        if tier_spec.cascade is not None and kinds.get(tier) == CHAT:
            yield from need(f"tier {tier!r}: cascade.to", tier_spec.cascade.to, CHAT)
    yield from need("quality.reference", spec.quality.reference, CHAT)
    judge = spec.quality.judge
    if judge is not None and judge.model in models and models[judge.model].kind != CHAT:
        yield Problem("quality.judge.model", f"{judge.model!r} is an embedding model; the judge must chat")
    for name, provider in providers.items():
        probed = provider.probe.model
        if probed in models and models[probed].kind != CHAT:  # type: ignore[operator]
            reason = f"{probed!r} is an embedding model; probe a chat model"
            yield Problem(f"provider {name!r}: probe.model", reason)
    yield from need("budgets.on_cap", spec.budgets.cap_tier, CHAT)
    for src, dst in (spec.budgets.pacing.downgrade or {}).items():
        if src in kinds and dst in kinds and kinds[src] != kinds[dst]:
            yield Problem(
                "budgets.pacing.downgrade", f"{src!r} ({kinds[src]}) cannot move to {dst!r} ({kinds[dst]})"
            )
    yield from embeddings_problems(spec, kinds)


def embeddings_problems(spec: RulesFile, kinds: dict[str, str]) -> Iterator[Problem]:
    section = spec.embeddings
    if section is None:
        return
    tiers = spec.tiers
    if section.default_tier not in tiers:
        yield Problem("embeddings.default_tier", unknown("tier", section.default_tier, tiers))
    elif kinds[section.default_tier] == CHAT:
        yield Problem("embeddings.default_tier", f"tier {section.default_tier!r} is a chat tier")
    seen: set[str] = set()
    for i, rule in enumerate(section.rules):
        where = f"embeddings rule {rule.name!r} (#{i + 1})"
        if rule.name in seen:
            yield Problem(where, "duplicate rule name")
        seen.add(rule.name)
        if rule.tier not in tiers:
            yield Problem(f"{where}: tier", unknown("tier", rule.tier, tiers))
        elif kinds[rule.tier] == CHAT:
            reason = f"tier {rule.tier!r} is a chat tier; embeddings rules need an embedding tier"
            yield Problem(f"{where}: tier", reason)
        for name in ("cascade", "quality"):
            if getattr(rule, name) is not None:
                yield Problem(f"{where}: {name}", f"embeddings rules have no {name}")
        for path, condition in chat_only(rule.when, "when"):
            reason = f"{condition!r} is a chat-only condition (an embedding input has none)"
            yield Problem(f"{where}: {path}", reason)


def chat_only(condition: Condition, path: str) -> Iterable[tuple[str, str]]:
    """(path, name) of every chat-only condition in `condition`, nested ones included."""
    for name in CHAT_ONLY_CONDITIONS:
        if getattr(condition, name) is not None:
            yield f"{path}.{name}", name
    for group in ("all", "any"):
        for j, child in enumerate(getattr(condition, group) or ()):
            yield from chat_only(child, f"{path}.{group}[{j}]")
    if condition.not_ is not None:
        yield from chat_only(condition.not_, f"{path}.not")
