"""The registry: every kind registered under its rules-file key, bare and configured forms,
named entries, and errors that name the entry (`on[2].min_length: ...`)."""

from __future__ import annotations

from typing import Any

import pytest
from tier_router.validators import (
    KINDS,
    Ask,
    ValidatorConfigError,
    build_named,
    build_one,
    build_validators,
    validate,
)

from tests.support.answers import reply

SHAPE = "give a validator's name, or a one-key mapping {kind: options}"
KNOWN = "json, max_length, min_length, must_match, must_not_match, refusal, tool_args, truncated"
ALL = [
    "truncated",
    "json",
    "tool_args",
    "refusal",
    "min_length",
    "max_length",
    "must_match",
    "must_not_match",
]


def test_every_kind_is_registered_under_its_own_key() -> None:
    assert sorted(KINDS) == sorted(ALL)
    for key, cls in KINDS.items():
        assert cls.kind == key


def test_the_cascade_on_list_of_the_design() -> None:
    named = build_named(
        {"no-apology": {"refusal": {"patterns": ["(?i)^i.?m sorry"]}}, "substantive": {"min_length": 40}}
    )
    checks = build_validators(
        ["json", "no-apology", {"min_length": 20}, "substantive", "tool_args", "truncated"], named
    )
    assert [c.name for c in checks] == [
        "json",
        "no-apology",
        "min_length",
        "substantive",
        "tool_args",
        "truncated",
    ]
    assert validate(checks, reply("A plain answer that is long enough to pass all of these."), Ask()) is None
    got = validate(checks, reply("A plain answer, long enough for twenty."), Ask())
    assert got is not None
    assert got.header() == "substantive: the answer has 39 characters, fewer than 40"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["json", "tool_args", {"min_length": "x"}],
         "on[2].min_length: min_length must be an integer, not a string"),
        ([{"min_length": 1, "max_length": 2}], f"on[0]: {SHAPE}"),
        (["refusal", "jsn"], f"on[1]: unknown validator 'jsn' (known: {KNOWN})"),
        ([{"json": {"x": 1}}], "on[0].json: json takes no options"),
        ([{"truncated": "yes"}], "on[0].truncated: truncated takes no options"),
        ([{"must_match": "("}], "on[0].must_match: pattern: invalid regex '(': missing ): ("),
        ([3], f"on[0]: {SHAPE}"),
    ],
)  # fmt: skip
def test_errors_name_the_entry(items: list[Any], message: str) -> None:
    with pytest.raises(ValidatorConfigError) as caught:
        build_validators(items, {})
    assert str(caught.value) == message


def test_named_entries_errors_name_the_entry() -> None:
    with pytest.raises(
        ValidatorConfigError, match=r"^validators\.short\.min_length: min_length must be between"
    ):
        build_named({"short": {"min_length": -3}})
    with pytest.raises(ValidatorConfigError, match=r"^validators\.x: unknown validator 'nope'"):
        build_named({"x": "nope"})


def test_the_bare_forms_that_need_options_say_so() -> None:
    for kind in ("min_length", "max_length", "must_match", "must_not_match"):
        with pytest.raises(ValidatorConfigError, match=rf"^on\[0\]\.{kind}: {kind} needs "):
            build_validators([kind], {})
    for kind in ("truncated", "json", "tool_args", "refusal"):
        assert build_one(kind, {}).name == kind
