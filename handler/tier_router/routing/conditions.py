"""Conditions compiled once into small predicate objects.

Regexes run on RE2 (linear time in the input, so a hostile prompt cannot cause
catastrophic backtracking). All patterns aimed at the same text (last user message, system
prompt, all text) are compiled into one `re2.Set`: a request pays one scan per text that a
rule actually looks at, however many regex rules there are, and only when the first regex
condition on that text is reached.

Each predicate can also say *why* it held (`why`), used for explain output only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import re2

from tier_router.errors import ConfigError
from tier_router.routing.features import Features
from tier_router.schema.units import CONDITION_FIELDS

if TYPE_CHECKING:
    from tier_router.schema import Condition, Pattern, ValueTest

Target = Literal["last_user", "system", "any_text"]
TARGET_OF_FIELD: dict[str, Target] = {
    "last_user_matches": "last_user",
    "system_matches": "system",
    "any_text_matches": "any_text",
}
RANGE_FIELDS = (
    "last_user_chars",
    "last_user_tokens",
    "conversation_chars",
    "conversation_tokens",
    "message_count",
    "max_tokens",
)
FLAG_FIELDS = ("has_tools", "json_response", "has_images")
SET_MAX_MEM = 64 << 20
"""RE2's DFA memory per set. Generous: a Set whose DFA runs out of memory reports no match."""


class RegexError(ConfigError):
    """A pattern RE2 cannot compile; `where` is the field path, the loader adds file and rule."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


def re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = SET_MAX_MEM
    return options


def compile_pattern(pattern: str, ignore_case: bool) -> re2._Regexp:
    try:
        if ignore_case:  # wrapping could make an invalid pattern valid: `a)|(b` → `(?i:a)|(b)`
            re2.compile(pattern, re2_options())
        return re2.compile(with_flags(pattern, ignore_case), re2_options())
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise RegexError(f"invalid regex {pattern!r}: {reason}") from None


def with_flags(pattern: str, ignore_case: bool) -> str:
    return f"(?i:{pattern})" if ignore_case else pattern


class Context:
    """One request under evaluation: its features and the lazily computed regex-set hits."""

    __slots__ = ("_hits", "features", "sets")

    def __init__(self, features: Features, sets: RegexSets) -> None:
        self.features = features
        self.sets = sets
        self._hits: dict[Target, frozenset[int]] = {}

    def hits(self, target: Target) -> frozenset[int]:
        found = self._hits.get(target)
        if found is None:
            found = self._hits[target] = self.sets.match(target, self.text(target))
        return found

    def text(self, target: Target) -> str:
        if target == "last_user":
            return self.features.last_user_text
        if target == "system":
            return self.features.system_text
        return self.features.all_text


class RegexSets:
    """One RE2 set per target text, built while conditions compile, frozen by `compile()`."""

    def __init__(self) -> None:
        self._patterns: dict[Target, list[str]] = {"last_user": [], "system": [], "any_text": []}
        self._sets: dict[Target, re2.Set] = {}

    def add(self, target: Target, spec: Pattern) -> int:
        compile_pattern(spec.pattern, spec.ignore_case)  # precise error now, not a vague set error
        patterns = self._patterns[target]
        patterns.append(with_flags(spec.pattern, spec.ignore_case))
        return len(patterns) - 1

    def compile(self) -> None:
        for target, patterns in self._patterns.items():
            if not patterns:
                continue
            regex_set = re2.Set.SearchSet(re2_options())
            for pattern in patterns:
                regex_set.Add(pattern)
            try:
                regex_set.Compile()
            except re2.error:
                raise RegexError(
                    f"the {len(patterns)} patterns on {target} text need more than "
                    f"{SET_MAX_MEM >> 20} MB of RE2 memory; simplify them"
                ) from None
            self._sets[target] = regex_set

    def match(self, target: Target, text: str) -> frozenset[int]:
        regex_set = self._sets.get(target)
        if regex_set is None:
            return frozenset()
        return frozenset(regex_set.Match(text) or ())

    def pattern(self, target: Target, index: int) -> str:
        return self._patterns[target][index]


class Predicate:
    __slots__ = ()

    def test(self, ctx: Context) -> bool:
        raise NotImplementedError

    def why(self, ctx: Context) -> Iterator[str]:
        """Descriptions of the leaves that made this predicate hold (call only when it holds)."""
        raise NotImplementedError


class Group(Predicate):
    """All (`AllOf`) or any (`AnyOf`) of other predicates."""

    __slots__ = ("children",)
    every: ClassVar[bool]

    def __init__(self, children: tuple[Predicate, ...]) -> None:
        self.children = children

    def test(self, ctx: Context) -> bool:
        tests = (child.test(ctx) for child in self.children)
        return all(tests) if self.every else any(tests)

    def why(self, ctx: Context) -> Iterator[str]:
        """All: every child's reasons. Any: the reasons of the first child that holds."""
        for child in self.children:
            if self.every or child.test(ctx):
                yield from child.why(ctx)
                if not self.every:
                    return


class AllOf(Group):
    __slots__ = ()
    every = True


class AnyOf(Group):
    __slots__ = ()
    every = False


@dataclass(frozen=True, slots=True)
class Not(Predicate):
    child: Predicate
    label: str

    def test(self, ctx: Context) -> bool:
        return not self.child.test(ctx)

    def why(self, ctx: Context) -> Iterator[str]:
        yield f"not ({self.label})"


@dataclass(frozen=True, slots=True)
class RegexTest(Predicate):
    field: str
    target: Target
    index: int  # in the target's regex set

    def test(self, ctx: Context) -> bool:
        return self.index in ctx.hits(self.target)

    def why(self, ctx: Context) -> Iterator[str]:
        yield f"{self.field} /{ctx.sets.pattern(self.target, self.index)}/"


@dataclass(frozen=True, slots=True)
class RangeTest(Predicate):
    field: str
    low: int | None
    high: int | None

    def test(self, ctx: Context) -> bool:
        value = getattr(ctx.features, self.field)
        if value is None:  # e.g. max_tokens not sent: a bound cannot hold
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def why(self, ctx: Context) -> Iterator[str]:
        bounds = [
            f"min {self.low}" if self.low is not None else "",
            f"max {self.high}" if self.high is not None else "",
        ]
        yield f"{self.field}={getattr(ctx.features, self.field)} ({', '.join(b for b in bounds if b)})"


@dataclass(frozen=True, slots=True)
class FlagTest(Predicate):
    field: str
    expected: bool

    def test(self, ctx: Context) -> bool:
        return getattr(ctx.features, self.field) is self.expected

    def why(self, ctx: Context) -> Iterator[str]:
        yield f"{self.field}={str(self.expected).lower()}"


class ValuePredicate(Predicate):
    """header / metadata / user: equals one of, matches a regex, or is present."""

    __slots__ = ("equals", "ignore_case", "key", "label", "present", "regex", "source")

    def __init__(self, source: str, key: str | None, spec: ValueTest) -> None:
        self.source = source
        self.key = key.lower() if source == "header" and key else key
        self.label = f"{source}[{key}]" if key else source
        self.ignore_case = spec.ignore_case
        self.present = spec.present
        self.equals = (
            frozenset(v.casefold() if spec.ignore_case else v for v in spec.equals) if spec.equals else None
        )
        self.regex = compile_pattern(spec.matches, spec.ignore_case) if spec.matches else None

    def value(self, ctx: Context) -> str | None:
        features = ctx.features
        if self.source == "header":
            return features.headers.get(self.key)  # type: ignore[arg-type]
        if self.source == "metadata":
            return features.metadata.get(self.key)  # type: ignore[arg-type]
        return features.user

    def test(self, ctx: Context) -> bool:
        value = self.value(ctx)
        if self.present is not None:
            return (value is not None) is self.present
        if value is None:
            return False
        if self.equals is not None:
            return (value.casefold() if self.ignore_case else value) in self.equals
        return self.regex.search(value) is not None  # type: ignore[union-attr]

    def why(self, ctx: Context) -> Iterator[str]:
        if self.present is not None:
            yield f"{self.label} {'present' if self.present else 'absent'}"
        else:
            yield f"{self.label}={self.value(ctx)!r}"


def compile_condition(condition: Condition, sets: RegexSets, where: str = "when") -> Predicate:
    """Compile one condition mapping; several keys in it are an implicit `all`."""
    parts: list[Predicate] = []
    for field in condition.model_fields_set:
        name = "not" if field == "not_" else field
        try:
            parts.append(compile_field(condition, field, sets, f"{where}.{name}"))
        except RegexError as exc:
            if not exc.where:
                exc.where = f"{where}.{name}"
            raise
    # Deterministic and cheap-first: flags and numbers before regexes, in schema order.
    parts.sort(key=lambda p: (isinstance(p, RegexTest | Group | Not), FIELD_ORDER.get(label(p), 99)))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def compile_field(condition: Condition, field: str, sets: RegexSets, where: str) -> Predicate:
    value = getattr(condition, field)
    if field == "all":
        return AllOf(tuple(compile_condition(c, sets, f"{where}[{i}]") for i, c in enumerate(value)))
    if field == "any":
        return AnyOf(tuple(compile_condition(c, sets, f"{where}[{i}]") for i, c in enumerate(value)))
    if field == "not_":
        return Not(compile_condition(value, sets, where), describe(value))
    if field in TARGET_OF_FIELD:
        target = TARGET_OF_FIELD[field]
        return RegexTest(field, target, sets.add(target, value))
    if field in RANGE_FIELDS:
        return RangeTest(field, value.min, value.max)
    if field in FLAG_FIELDS:
        return FlagTest(field, value)
    try:
        if field == "header":
            return ValuePredicate("header", value.name, value)
        if field == "metadata":
            return ValuePredicate("metadata", value.key, value)
        if field == "user":
            return ValuePredicate("user", None, value)
    except RegexError as exc:
        exc.where = f"{where}.matches"
        raise
    raise AssertionError(f"condition field without a compiler: {field}")


FIELD_ORDER = {name: i for i, name in enumerate(CONDITION_FIELDS)}


def label(predicate: Predicate) -> str:
    return getattr(predicate, "field", "")


def describe(condition: Condition) -> str:
    """A compact one-line rendering of a condition, for `not (...)` explanations."""
    dumped = condition.model_dump(exclude_unset=True, by_alias=True)
    return ", ".join(f"{key}: {value}" for key, value in dumped.items())
