"""`must_match` / `must_not_match`: RE2 compiled at load (bad patterns fail with RE2's reason),
searched anywhere in the text in linear time; must_not_match decides early."""

from __future__ import annotations

import pytest
from tier_router.validators import Ask, Choice, Failure, build_validators, validate
from tier_router.validators.patterns import MustMatch, MustNotMatch

from tests.support.answers import reply

ASK = Ask()
EVIL = ["(a+)+$", "(a|aa)*b", "(.*a){20}", r"^(\w+\s?)*$", "(x+x+)+y"]


def test_must_match_forms() -> None:
    bare = MustMatch.configure(r"(?m)^Summary:")
    assert bare.check(Choice("Intro\nSummary: ok"), ASK) is None
    assert bare.check(Choice("no summary here"), ASK) == "the answer does not match the required pattern"
    folded = MustMatch.configure({"pattern": "^summary:", "ignore_case": True})
    assert folded.check(Choice("SUMMARY: ok"), ASK) is None
    assert MustMatch.configure({"pattern": "^summary:"}).check(Choice("SUMMARY: ok"), ASK) is not None


def test_must_not_match() -> None:
    check = MustNotMatch.configure({"pattern": r"\bTODO\b", "ignore_case": False})
    assert check.check(Choice("all done"), ASK) is None
    assert check.check(Choice("left a TODO here"), ASK) == "the answer matches a forbidden pattern"


def test_must_not_match_early_waits_when_the_match_touches_the_end() -> None:
    check = MustNotMatch.configure(r"\bTODO\b")
    assert check.early("left a TODO", ASK) is None  # could be "TODOS" once more text comes
    assert check.early("left a TODOS", ASK) is None
    assert check.early("left a TODO ", ASK) == "the answer matches a forbidden pattern"


@pytest.mark.parametrize("pattern", EVIL)
def test_backtracking_bait_runs_in_linear_time_on_a_megabyte(pattern: str) -> None:
    text = "a" * 1_000_000 + "!"
    MustMatch.configure(pattern).check(Choice(text), ASK)
    MustNotMatch.configure(pattern).check(Choice(text), ASK)
    MustNotMatch.configure(pattern).early(text, ASK)


def test_lone_surrogates_do_not_break_the_search() -> None:
    assert MustMatch.configure("ok$").check(Choice("\ud800 ok"), ASK) is None
    assert MustNotMatch.configure("x").check(Choice("\udfffx"), ASK) is not None
    assert MustNotMatch.configure("b").early("a\ud800bc", ASK) is not None


def test_only_the_second_choice_fails() -> None:
    got = validate(build_validators([{"must_not_match": "secret"}], {}), reply("fine", "a secret"), ASK)
    assert got == Failure("must_not_match", "the answer matches a forbidden pattern", 1)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"must_match": "(unclosed"},
            r"on\[0\]\.must_match: pattern: invalid regex '\(unclosed': missing \)",
        ),
        ({"must_match": r"(?<=a)b"}, r"on\[0\]\.must_match: pattern: invalid regex .*invalid perl operator"),
        ({"must_not_match": r"\1"}, r"on\[0\]\.must_not_match: pattern: invalid regex .*invalid escape"),
        ("must_match", r"on\[0\]\.must_match: must_match needs a pattern: \{must_match: 'regex'\}"),
        ({"must_match": ""}, r"on\[0\]\.must_match: pattern must be a non-empty string"),
        ({"must_match": 3}, r"on\[0\]\.must_match: must_match takes a mapping of options"),
        ({"must_match": {"ignore_case": True}}, r"on\[0\]\.must_match: must_match needs a pattern"),
        ({"must_match": {"pattern": "x", "flags": "i"}}, r"on\[0\]\.must_match: unknown option 'flags'"),
        (
            {"must_match": {"pattern": "x", "ignore_case": "yes"}},
            r"ignore_case must be true or false, not a string",
        ),
        ({"must_match": {"pattern": "a)|(b", "ignore_case": True}}, r"invalid regex 'a\)\|\(b'"),
    ],
)
def test_bad_options_fail_at_load_with_re2s_reason(item: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_validators([item], {})
