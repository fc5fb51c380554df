"""Hostile inputs: backtracking-bait patterns and long texts, odd Unicode, and a property test
that the RE2-set optimisation matches exactly what each pattern would match on its own.

No timings are asserted: RE2 is linear-time, so "it returns, with the right decision" is
the property; a backtracking engine would hang these tests instead of failing them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import re2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tier_router.routing.conditions import RegexSets
from tier_router.routing.engine import Rules
from tier_router.routing.loader import load_rules
from tier_router.routing.request import Chat, parse_chat
from tier_router.schema import Condition, Pattern

MakeRules = Callable[..., Rules]
MakeChat = Callable[..., Chat]

SHIPPED_RULES = Path(__file__).resolve().parents[2] / "rules" / "router.yaml"

A_BANG = "a" * 100_000 + "!"
EVIL_PATTERNS = ["(a+)+$", "(a|aa)*b", "(.*a){20}", r"^(\w+\s?)*$", "(x+x+)+y", "^(a|a?)+$", "([a-z]+)*[0-9]"]


def oracle(pattern: str, ignore_case: bool) -> re2._Regexp:
    """The pattern compiled on its own, case folding by RE2 option (not by the loader's wrapper)."""
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    return re2.compile(pattern, options)


def walk(condition: Condition) -> Iterator[tuple[str, Pattern]]:
    """Every regex condition (field, Pattern) in a condition tree."""
    for field in condition.model_fields_set:
        value = getattr(condition, field)
        if field in ("all", "any"):
            for child in value:
                yield from walk(child)
        elif field == "not_":
            yield from walk(value)
        elif isinstance(value, Pattern):
            yield field, value


SHIPPED_PATTERNS = [spec for rule in load_rules(SHIPPED_RULES).spec.rules for _, spec in walk(rule.when)]


# --- backtracking bait --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("(a+)+$", A_BANG, False),
        ("(a+)+$", "a" * 100_000, True),
        ("(a|aa)*b", A_BANG, False),
        ("(a|aa)*b", "a" * 100_000 + "b", True),
        ("(.*a){20}", A_BANG, True),
        ("(.*a){20}", "b" * 100_000 + "a" * 19, False),
        (r"^(\w+\s?)*$", "word " * 20_000 + "!", False),
        ("(x+x+)+y", "x" * 100_000, False),
        ("^(a|a?)+$", A_BANG, False),
        ("([a-z]+)*[0-9]", "abc" * 30_000 + "!", False),
    ],
)
@pytest.mark.parametrize("field", ["last_user_matches", "any_text_matches", "system_matches"])
def test_evil_patterns_on_long_texts(
    make_rules: MakeRules, chat: MakeChat, field: str, pattern: str, text: str, expected: bool
) -> None:
    rules = make_rules([{"name": "evil", "tier": "top", "when": {field: pattern}}])
    request = chat(text, system=text) if field == "system_matches" else chat(text)
    decision = rules.decide(request)
    assert decision.label == ("evil" if expected else "default")
    assert decision.features.last_user_chars == len(text)


def test_many_evil_patterns_in_one_set(make_rules: MakeRules, chat: MakeChat) -> None:
    """All bait patterns share one RE2 set; only the one that can match does."""
    rules = make_rules(
        [
            {"name": f"evil-{i}", "tier": "top", "when": {"last_user_matches": p}}
            for i, p in enumerate(EVIL_PATTERNS)
        ]
    )
    decision = rules.decide(chat(A_BANG))
    assert decision.label == f"evil-{EVIL_PATTERNS.index('(.*a){20}')}"
    assert rules.decide(chat("c" * 100_000 + "!")).label == "default"


@pytest.mark.parametrize("pattern", EVIL_PATTERNS)
def test_evil_patterns_on_header_metadata_and_user(
    make_rules: MakeRules, chat: MakeChat, pattern: str
) -> None:
    value = "a" * 50_000 + "!"
    rules = make_rules(
        [
            {"name": "h", "tier": "top", "when": {"header": {"name": "x-evil", "matches": pattern}}},
            {"name": "m", "tier": "top", "when": {"metadata": {"key": "evil", "matches": pattern}}},
            {"name": "u", "tier": "top", "when": {"user": {"matches": pattern, "ignore_case": True}}},
        ]
    )
    expected = oracle(pattern, False).search(value) is not None
    assert rules.decide(chat("hi"), {"x-evil": value}).label == ("h" if expected else "default")
    assert rules.decide(chat("hi", metadata={"evil": value})).label == ("m" if expected else "default")
    assert rules.decide(chat("hi", user=value)).label == ("u" if expected else "default")


# text → the shipped rule it must get (the same text, cut to 50K characters, is also the system
# prompt). Non-ASCII text estimates at ~1 token per 3 UTF-8 bytes, so the long ones are long-context.
HOSTILE_TEXTS = {
    "a-bang": (A_BANG, "default"),
    "near-miss-words": ("prov deriv archit refact summar transl " * 3_000, "default"),
    "repeated-keyword": ("step by step " * 10_000, "hard-reasoning"),
    "fences": ("```" * 30_000, "code"),
    "accents": ("é" * 100_000, "long-context"),
    "cjk": ("翻訳" * 50_000, "long-context"),
    "emoji": ("😀" * 50_000 + "summarize", "long-context"),
    "short-emoji": ("😀" * 2_000 + " summarize", "simple-transforms"),
    "nul-bytes": ("\x00" * 50_000 + " translate", "simple-transforms"),
    "whitespace": (" \t\n" * 40_000, "default"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_shipped_rules_on_hostile_texts(shipped: Rules, chat: MakeChat, name: str) -> None:
    text, expected_rule = HOSTILE_TEXTS[name]
    decision = shipped.decide(chat(text, system=text[:50_000]))
    assert decision.label == expected_rule


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_every_shipped_regex_on_hostile_texts_matches_like_re2(name: str) -> None:
    text = HOSTILE_TEXTS[name][0]
    sets = RegexSets()
    indices = [sets.add("any_text", spec) for spec in SHIPPED_PATTERNS]
    sets.compile()
    expected = {
        i
        for i, spec in zip(indices, SHIPPED_PATTERNS, strict=True)
        if oracle(spec.pattern, spec.ignore_case).search(text)
    }
    assert sets.match("any_text", text) == frozenset(expected)


def test_shipped_rules_have_regexes() -> None:
    assert len(SHIPPED_PATTERNS) >= 4  # guards the walk above against silently finding nothing


def test_many_messages_and_parts(shipped: Rules, chat: MakeChat) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": [{"type": "text", "text": "ok"}] * 5}
        for i in range(5_000)
    ]
    decision = shipped.decide(chat(messages=messages))
    assert decision.features.message_count == 5_000
    assert decision.label == "default"


def test_deeply_nested_condition(make_rules: MakeRules, chat: MakeChat) -> None:
    when: dict[str, Any] = {"last_user_matches": "deep"}
    for _ in range(60):
        when = {"not": {"not": when}}
    rules = make_rules([{"name": "deep", "tier": "top", "when": when}])
    assert rules.decide(chat("deep")).label == "deep"
    assert rules.decide(chat("shallow")).label == "default"


def test_huge_max_tokens(shipped: Rules, chat: MakeChat) -> None:
    decision = shipped.decide(chat("hi", max_tokens=10**30, model="premium"))
    assert [r.name for r in decision.candidates] == ["claude-sonnet-4.5", "gpt-4.1", "gemini-2.5-pro"]
    assert decision.skipped == ()  # nothing fits, so the chain is kept whole


def test_lone_surrogate_is_rejected_or_routed(make_rules: MakeRules) -> None:
    """BUG: `json.loads` accepts "\\ud800" escapes, and the request model accepted the lone surrogate;
    the engine then crashes with UnicodeEncodeError (token estimate and RE2 encode to UTF-8).
    One crafted request must not be a 500: reject it at validation or route it."""
    rules = make_rules(
        [
            {"name": "text", "tier": "top", "when": {"last_user_matches": "zzz"}},
            {"name": "meta", "tier": "top", "when": {"metadata": {"key": "team", "matches": "zzz"}}},
        ]
    )
    body = json.loads(
        '{"model": "auto", "messages": [{"role": "user", "content": "hi \\ud800"}],'
        ' "metadata": {"team": "\\udc00"}}'
    )
    try:
        request = parse_chat(body)
    except ValidationError:
        return
    assert rules.decide(request).label == "default"


# --- property: the RE2 set agrees with each pattern on its own ------------------------------------

ATOMS = [
    "a",
    "b",
    "A",
    "é",
    "É",
    "ж",
    "Ж",
    "日",
    "😀",
    ".",
    r"\d",
    r"\w",
    r"\s",
    r"\S",
    "[a-c]",
    "[^a]",
    r"\.",
    "(?:ab)",
    "[жЖ]",
    r"\p{Han}",
    "ß",
    "-",
    " ",
]
ANCHORS = ["", "", "", "^", "$", r"\b", r"\B"]
QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "+?"]
ALPHABET = list("abcAB éÉжЖ日本😀ß1.-_\n\t")

piece = st.builds(
    lambda anchor, atom, q: anchor + atom + q,
    st.sampled_from(ANCHORS),
    st.sampled_from(ATOMS),
    st.sampled_from(QUANTIFIERS),
)
sequence = st.lists(piece, min_size=1, max_size=4).map("".join)
generated = st.one_of(
    sequence,
    st.tuples(sequence, sequence).map("|".join),
    sequence.map(lambda s: f"({s})+"),
    sequence.map(lambda s: f"^{s}$"),
)
patterns = st.one_of(generated, st.sampled_from([spec.pattern for spec in SHIPPED_PATTERNS]))
texts = st.one_of(
    st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(st.tuples(patterns, st.booleans()), min_size=1, max_size=8), text=texts)
def test_regex_set_matches_like_each_pattern_alone(specs: list[tuple[str, bool]], text: str) -> None:
    try:
        singles = [oracle(p, ic) for p, ic in specs]
    except re2.error:
        assume(False)
        return
    sets = RegexSets()
    indices = [sets.add("last_user", Pattern(pattern=p, ignore_case=ic)) for p, ic in specs]
    sets.compile()
    expected = frozenset(
        i for i, regex in zip(indices, singles, strict=True) if regex.search(text) is not None
    )
    assert sets.match("last_user", text) == expected


@pytest.mark.parametrize("pattern", ["^$", "x*", r"^\s*$", r"\A", "(?:)|a"])
def test_regex_set_matches_empty_text_like_re2(pattern: str) -> None:
    """BUG: RegexSets.match returns no hits for "" without scanning, though these patterns match
    the empty string (`re2.search(p, "")` does)."""
    sets = RegexSets()
    index = sets.add("last_user", Pattern(pattern=pattern))
    sets.compile()
    assert oracle(pattern, False).search("") is not None
    assert index in sets.match("last_user", "")
