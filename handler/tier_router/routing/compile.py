"""Compile a validated rules file into what the router runs: routes, chains, targets, rules
whose conditions are predicates over one shared set of RE2 regexes.

The input is the validated `RulesFile` (from `routing.loader`) or its runtime form (from a
compiled rules file, `routing.compiled`): both read alike, and nothing here imports pydantic.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tier_router.routing.cascades import compile_cascades
from tier_router.routing.conditions import RegexError, RegexSets, compile_condition
from tier_router.routing.engine import AUTO, CompiledRule, ModelRoute, Rules, Target
from tier_router.routing.experiments import build_arms, build_gate
from tier_router.routing.problem import Problem, RulesError
from tier_router.routing.splits import build_split

if TYPE_CHECKING:
    from tier_router.schema import Rule, RulesFile


def rule_lists(spec: RulesFile) -> list[tuple[str, list[Rule]]]:
    """The chat rules and the embeddings rules, with the prefix their problems are named by."""
    lists = [("", spec.rules)]
    if spec.embeddings is not None:
        lists.append(("embeddings ", spec.embeddings.rules))
    return lists


S = TypeVar("S")


def overlay(provider: S, override: S | None) -> S:
    """The provider's setting (retry policy, timeouts) with the fields the model's override gives."""
    if override is None:
        return provider
    fields = override.model_fields_set  # type: ignore[attr-defined]
    return provider.model_copy(update={name: getattr(override, name) for name in fields})  # type: ignore[attr-defined,no-any-return]


def compile_rules(spec: RulesFile, source: Path) -> Rules:
    routes = {
        name: ModelRoute(
            name=name,
            provider_name=model.provider,
            provider=spec.providers[model.provider],
            model_id=model.id,
            price=model.price,
            context_window=model.context_window,
            max_output=model.max_output,
            retry=overlay(spec.providers[model.provider].retry, model.retry),
            timeouts=overlay(spec.providers[model.provider].timeouts, model.timeouts),
            kind=model.kind,
        )
        for name, model in spec.models.items()
    }
    tiers = {tier: tuple(routes[m] for m in chain) for tier, chain in spec.tiers.items()}
    splits = {
        tier: split
        for tier, tier_spec in spec.tier_specs.items()
        if (split := build_split(tier, tier_spec, routes)) is not None
    }
    cascades, rule_cascades = compile_cascades(spec)
    arms = {name: build_arms(name, experiment) for name, experiment in spec.experiments.items()}
    sets = RegexSets()
    compiled: dict[str, list[CompiledRule]] = {}
    problems: list[Problem] = []
    for head, rules in rule_lists(spec):
        compiled[head] = []
        for i, rule in enumerate(rules):
            try:
                predicate = compile_condition(rule.when, sets)
            except RegexError as exc:
                where = f"{head}rule {rule.name!r} (#{i + 1}): {exc.where or 'when'}"
                problems.append(Problem(where, str(exc)))
                continue
            gate = build_gate(rule, arms)
            cascade = rule_cascades.get(rule.name) if not head else None
            compiled[head].append(CompiledRule(rule.name, rule.tier, predicate, rule.priority, gate, cascade))
    try:
        sets.compile()
    except RegexError as exc:
        problems.append(Problem("rules", str(exc)))
    if problems:
        raise RulesError(source, problems)
    targets = build_targets(spec, routes, tiers)
    chat, embedding = tuple(compiled[""]), tuple(compiled.get("embeddings ", ()))
    return Rules(spec, source, routes, tiers, chat, sets, targets, splits, cascades, embedding)


def build_targets(
    spec: RulesFile, routes: dict[str, ModelRoute], tiers: dict[str, tuple[ModelRoute, ...]]
) -> dict[str, Target]:
    """Resolve every name a request may use, so a request does one dict lookup."""
    targets: dict[str, Target] = {AUTO: Target(AUTO, None, ())}
    embedding = {name for name, model in spec.models.items() if model.kind == "embedding"}
    for tier, chain in tiers.items():
        targets[tier] = Target("tier", tier, chain, embedding=bool(chain) and chain[0].name in embedding)
    for name, route in routes.items():
        home = next((tier for tier, chain in tiers.items() if route in chain), None)
        chain = (route,)
        if home is not None and spec.routing.explicit_model_fallback:
            chain += tuple(r for r in tiers[home] if r is not route)
        targets[name] = Target("model", home, chain, embedding=name in embedding)
    for alias, target in spec.aliases.items():
        targets[alias] = targets[target]
    return targets
