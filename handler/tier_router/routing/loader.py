"""Load a rules file: parse YAML, validate, cross-check, compile — or fail with every problem.

A router must never start with a half-valid rules file, and an operator must be able to fix
a broken one from the error alone. So every problem is reported with the file, the rule (or
provider / model / tier) it belongs to, the field, and the reason — all of them at once,
not just the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from tier_router.routing.cascades import cascade_problems
from tier_router.routing.compile import compile_rules, rule_lists
from tier_router.routing.conditions import RegexError, RegexSets, compile_condition
from tier_router.routing.engine import AUTO, Rules
from tier_router.routing.experiments import gate_problems
from tier_router.routing.kinds import kind_problems
from tier_router.routing.problem import Problem, RulesError, unknown
from tier_router.routing.splits import split_problems
from tier_router.schema import RulesFile

__all__ = [
    "Problem",
    "RulesError",
    "compile_rules",
    "load_rules",
    "parse_rules",
    "pydantic_problem",
    "read_yaml",
    "unknown",
]


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML, plus an error on duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key must be a plain value, not {type(key).__name__}", mark
            ) from None
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(path, [Problem("", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise RulesError(path, [Problem("", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        reason = f"invalid YAML: {context + ': ' if context else ''}{problem}"
        raise RulesError(path, [Problem(where, reason)]) from None


def load_rules(path: Path | str) -> Rules:
    """Read, validate and compile a rules file. Raises `RulesError` listing every problem."""
    path = Path(path)
    return parse_rules(read_yaml(path), path)


def parse_rules(raw: Any, path: Path | str = "<rules>") -> Rules:
    if not isinstance(raw, dict):
        raise RulesError(
            path, [Problem("", "the file must be a YAML mapping (providers, models, tiers, ...)")]
        )
    try:
        spec = RulesFile.model_validate(raw)
    except ValidationError as exc:
        problems = [pydantic_problem(error, raw) for error in exc.errors()]
        raise RulesError(path, problems + problems_past_unknown_keys(raw, exc)) from None
    problems = list(cross_check(spec))
    if problems:
        raise RulesError(path, problems + regex_problems(spec))
    return compile_rules(spec, Path(path))


def problems_past_unknown_keys(raw: dict[str, Any], exc: ValidationError) -> list[Problem]:
    """When the only schema errors are unknown top-level keys (a typo such as `ruels:`), the
    file without them is checked too, so its cross-reference and regex problems come in the
    same report instead of after the typo is fixed."""
    errors = exc.errors()
    if not all(e["type"] == "extra_forbidden" and len(e["loc"]) == 1 for e in errors):
        return []
    unknown_keys = {e["loc"][0] for e in errors}
    try:
        spec = RulesFile.model_validate({k: v for k, v in raw.items() if k not in unknown_keys})
    except ValidationError:  # e.g. the typo hid a required section: nothing more to say
        return []
    return list(cross_check(spec)) + regex_problems(spec)


def regex_problems(spec: RulesFile) -> list[Problem]:
    """Compile every rule's regexes into a scratch set, only to report their errors too."""
    problems = []
    for head, rules in rule_lists(spec):
        for i, rule in enumerate(rules):
            try:
                compile_condition(rule.when, RegexSets())
            except RegexError as exc:
                where = f"{head}rule {rule.name!r} (#{i + 1}): {exc.where or 'when'}"
                problems.append(Problem(where, str(exc)))
    return problems


# --- turning pydantic's errors into an operator's language -------------------------------


def model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The schema model that holds the key at the end of `loc` (for precise hints)."""
    current: Any = root
    for part in loc[:-1]:
        current = unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for name, f in current.model_fields.items() if part in (name, f.alias)), None)
            current = field.annotation if field else None
        elif get_origin(current) in (list, tuple):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
    current = unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def unwrap(annotation: Any) -> Any:
    """`X | None` → X; `Annotated[X, ...]` → X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def valid_keys(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def pydantic_problem(error: Any, raw: dict[str, Any], root: type[BaseModel] = RulesFile) -> Problem:
    loc = tuple(error["loc"])
    where = locate(loc, raw)
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        model = model_at(loc, root)
        known = [k for k in valid_keys(model) if k != key] if model else []
        hint = difflib.get_close_matches(key, known, n=1)
        reason = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    elif error["type"] == "missing":
        reason = f"missing required key {loc[-1]!r}"
    else:
        reason = error["msg"].removeprefix("Value error, ")
        if (
            error["type"] != "value_error"
            and "input" in error
            and not isinstance(error["input"], dict | list)
        ):
            reason += f" (got {error['input']!r})"
    return Problem(where, reason)


def locate(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """('rules', 3, 'when', 'any', 0, 'x') → "rule 'name' (#4): when.any[0].x"."""
    if len(loc) >= 3 and loc[0] == "embeddings" and loc[1] == "rules" and isinstance(loc[2], int):
        section = raw.get("embeddings")
        return "embeddings " + locate(loc[1:], section if isinstance(section, dict) else {})
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules")
        name = None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
        head = f"rule {name!r} (#{loc[1] + 1})" if name else f"rule #{loc[1] + 1}"
        return join_loc(head, loc[2:])
    section_names = {"providers": "provider", "models": "model", "experiments": "experiment"}
    if len(loc) >= 2 and loc[0] in section_names:
        return join_loc(f"{section_names[loc[0]]} {loc[1]!r}", loc[2:])
    if len(loc) >= 2 and loc[0] == "validators":
        return join_loc(f"validator {loc[1]!r}", loc[2:])
    if len(loc) >= 2 and loc[0] == "tiers":
        return join_loc(f"tier {loc[1]!r}", tier_loc(loc[1], loc[2:], raw))
    return join_loc("", loc)


def tier_loc(tier: Any, rest: tuple[Any, ...], raw: dict[str, Any]) -> tuple[Any, ...]:
    """A tier's error path as the file wrote it: the list form has no `models` key, and a bare
    model name no `model` key (`tier 'x'[1]`, `tier 'x': models[1].weight`)."""
    tiers = raw.get("tiers")
    written = tiers.get(tier) if isinstance(tiers, dict) else None
    if len(rest) >= 2 and rest[0] == "models" and isinstance(rest[1], int):
        entries = written if isinstance(written, list) else None
        if isinstance(written, dict) and isinstance(written.get("models"), list):
            entries = written["models"]
        if entries is not None and rest[1] < len(entries) and not isinstance(entries[rest[1]], dict):
            rest = rest[:2] + tuple(part for part in rest[2:3] if part != "model") + rest[3:]
        if isinstance(written, list):
            rest = rest[1:]
    return rest


def join_loc(head: str, rest: Iterable[Any]) -> str:
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text or head else str(part))
    if head and text:
        return f"{head}: {text.lstrip('.')}"
    return head or text


# --- references between sections ---------------------------------------------------------


def cross_check(spec: RulesFile) -> Iterable[Problem]:
    models, tiers, providers = spec.models, spec.tiers, spec.providers
    for name, model in models.items():
        if model.provider not in providers:
            yield Problem(f"model {name!r}: provider", unknown("provider", model.provider, providers))
    for name, provider in providers.items():
        probed = provider.probe.model
        if probed is not None and (probed not in models or models[probed].provider != name):
            yield Problem(f"provider {name!r}: probe.model", f"{probed!r} is not a model of this provider")
        if provider.kind == "mock":
            from tier_router.providers.mock import check_url  # only rules files with mock providers

            try:
                check_url(provider.base_url)
            except ValueError as exc:
                yield Problem(f"provider {name!r}: base_url", str(exc))
    for tier, chain in tiers.items():
        tier_spec = spec.tier_specs[tier]
        if not chain:
            yield Problem(f"tier {tier!r}", "empty chain: list at least one model")
        seen: set[str] = set()
        for i, model_name in enumerate(chain):
            where = f"tier {tier!r}[{i}]" if tier_spec.listed else f"tier {tier!r}: models[{i}]"
            if model_name not in models:
                yield Problem(where, unknown("model", model_name, models))
            if model_name in seen:
                yield Problem(where, f"model {model_name!r} is listed twice")
            seen.add(model_name)
        for reason in split_problems(tier, tier_spec):
            yield Problem(f"tier {tier!r}", reason)
    for clash in sorted(set(tiers) & set(models)):
        yield Problem(
            f"tier {clash!r}", "a tier and a model share this name; requests could not tell them apart"
        )
    for name in (AUTO,):
        if name in tiers or name in models:
            yield Problem(f"{name!r}", "is reserved for rule-based routing; rename the tier or model")
    if spec.default_tier not in tiers:
        yield Problem("default_tier", unknown("tier", spec.default_tier, tiers))
    for alias, target in spec.aliases.items():
        if alias in tiers or alias in models or alias == AUTO:
            yield Problem(f"aliases.{alias}", "an alias cannot reuse the name of a tier, a model or 'auto'")
        if target != AUTO and target not in tiers and target not in models:
            yield Problem(f"aliases.{alias}", unknown("tier or model", target, {**tiers, **models}))
    sections = (spec.budgets, spec.cache, spec.prompt_cache)
    rule_names = [rule.name for rule in spec.rules]
    for problem in [p for part in sections for p in part.unknown_tiers(tiers)]:
        section, _, reason = problem.partition(": ")
        yield Problem(section, reason)
    for problem in (*spec.cache.unknown_rules(rule_names), *spec.prompt_cache.unknown_rules(rule_names)):
        section, _, reason = problem.partition(": ")
        yield Problem(section, reason)
    seen_rules: set[str] = set()
    for i, rule in enumerate(spec.rules):
        where = f"rule {rule.name!r} (#{i + 1})"
        if rule.name in seen_rules:
            yield Problem(where, "duplicate rule name")
        seen_rules.add(rule.name)
        if rule.tier not in tiers:
            yield Problem(f"{where}: tier", unknown("tier", rule.tier, tiers))
    for where, reason in (*cascade_problems(spec), *gate_problems(spec.rules, spec.experiments)):
        yield Problem(where, reason)
    if spec.embeddings is not None:
        for where, reason in gate_problems(spec.embeddings.rules, spec.experiments):
            yield Problem(f"embeddings {where}", reason)
    yield from quality_problems(spec)
    yield from kind_problems(spec)


def quality_problems(spec: RulesFile) -> Iterable[Problem]:
    """The `quality:` section names a tier and a model of this file; a rule that samples needs
    the file's judge (and a reference: its own or the file's)."""
    quality, tiers, models = spec.quality, spec.tiers, spec.models
    if quality.reference is not None and quality.reference not in tiers:
        yield Problem("quality.reference", unknown("tier", quality.reference, tiers))
    if quality.judge is not None and quality.judge.model not in models:
        yield Problem("quality.judge.model", unknown("model", quality.judge.model, models))
    for i, rule in enumerate(spec.rules):
        own = rule.quality
        if own is None:
            continue
        where = f"rule {rule.name!r} (#{i + 1}): quality"
        if own.reference is not None and own.reference not in tiers:
            yield Problem(f"{where}.reference", unknown("tier", own.reference, tiers))
        if own.sample and (quality.judge is None or (own.reference or quality.reference) is None):
            yield Problem(
                where, "sampling needs the file's quality.judge and a reference tier (its own or the file's)"
            )
