"""Cascades: a tier's or a rule's `cascade:` compiled onto `validators.Cascade`, and their checks.

    validators:
      substantive: {min_length: 40}               # a configured validator, used by name
    tiers:
      standard: {models: [...], cascade: {to: premium, on: [truncated, substantive], stream: hold}}
    rules:
      - {name: short-chat, tier: budget, cascade: {to: standard, on: [{min_length: 20}]}, when: ...}

A decision's cascade is its rule's when the rule has one, else its tier's; an escalated request
gets the `to` tier's own cascade (so escalation follows the tiers' cascades, which the loader
checks for cycles). A rule's cascade to its own tier is an error.

Validator entries are built by `tier_router.validators` (`build_named`, `build_validators`):
their errors are reported with the tier or rule and the field (`cascade.on[1].min_length`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tier_router.routing.problem import unknown

if TYPE_CHECKING:
    from tier_router.schema import RulesFile
    from tier_router.schema.quality import CascadeSpec
    from tier_router.validators import Cascade, Validator


def compile_cascade(spec: CascadeSpec, named: dict[str, Validator], source: str) -> Cascade:
    from tier_router.validators import Cascade, build_validators

    checks = build_validators(list(spec.on), named, "on")
    return Cascade(spec.to, checks, spec.stream == "hold", source)


def compile_cascades(spec: RulesFile) -> tuple[dict[str, Cascade], dict[str, Cascade]]:
    """(tier → its cascade, rule → its cascade), for those that have one. The file must have
    passed `cascade_problems`. `tier_router.validators` is imported only by a file with
    validators or cascades (docs/coldstart.md)."""
    if (
        not spec.validators
        and not any(rule.cascade for rule in spec.rules)
        and not any(t.cascade for t in spec.tier_specs.values())
    ):
        return {}, {}
    from tier_router.validators import build_named

    named = build_named(dict(spec.validators))
    tiers = {
        tier: compile_cascade(t.cascade, named, f"tier {tier!r}")
        for tier, t in spec.tier_specs.items()
        if t.cascade is not None
    }
    rules = {
        rule.name: compile_cascade(rule.cascade, named, f"rule {rule.name!r}")
        for rule in spec.rules
        if rule.cascade is not None
    }
    return tiers, rules


def cascade_problems(spec: RulesFile) -> Iterator[tuple[str, str]]:
    """(where, reason) for every invalid validator, unknown `to` tier, rule cascade to its own
    tier, and cascade cycle."""
    from tier_router.validators import ValidatorConfigError, build_one

    named, broken, broken_names = check_named(spec.validators)
    yield from broken
    tiers = spec.tier_specs
    owners: list[tuple[str, CascadeSpec, str | None]] = [
        (f"tier {tier!r}", t.cascade, None) for tier, t in tiers.items() if t.cascade is not None
    ]
    owners += [
        (f"rule {rule.name!r} (#{i + 1})", rule.cascade, rule.tier)
        for i, rule in enumerate(spec.rules)
        if rule.cascade is not None
    ]
    for owner, cascade, own_tier in owners:
        if cascade.to not in tiers:
            yield f"{owner}: cascade.to", unknown("tier", cascade.to, tiers)
        elif cascade.to == own_tier:
            yield f"{owner}: cascade.to", f"is the rule's own tier {own_tier!r}: escalate to another tier"
        for i, item in enumerate(cascade.on):
            if isinstance(item, str) and item in broken_names:
                continue  # already reported under validators:
            try:
                build_one(item, named, f"on[{i}]")
            except ValidatorConfigError as exc:
                yield f"{owner}: cascade.{exc.where}", exc.reason
    edges = {tier: t.cascade.to for tier, t in tiers.items() if t.cascade and t.cascade.to in tiers}
    for cycle in cascade_cycles(edges):
        yield "cascade cycle", " → ".join(cycle)


def check_named(
    entries: Mapping[str, Any],
) -> tuple[dict[str, Validator], list[tuple[str, str]], set[str]]:
    """The `validators:` section entry by entry: the good ones, (where, reason) for the others,
    and the others' names."""
    from tier_router.validators import ValidatorConfigError, build_named

    named: dict[str, Validator] = {}
    broken: list[tuple[str, str]] = []
    for name, item in entries.items():
        try:
            named.update(build_named({name: item}))
        except ValidatorConfigError as exc:
            detail = exc.where.removeprefix(f"validators.{name}").lstrip(".")
            broken.append((f"validator {name!r}" + (f": {detail}" if detail else ""), exc.reason))
    return named, broken, {name for name in entries if name not in named}


def cascade_cycles(edges: Mapping[str, str]) -> list[list[str]]:
    """Each cycle of tier → cascade.to once, from its first tier in the file's order:
    [standard, premium, standard]."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    for start in edges:
        path: list[str] = []
        tier: str | None = start
        while tier is not None and tier not in done and tier not in path:
            path.append(tier)
            tier = edges.get(tier)
        if tier is not None and tier in path:
            cycles.append([*path[path.index(tier) :], tier])
        done.update(path)
    return cycles
