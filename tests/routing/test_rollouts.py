"""Rollouts and experiments: shares of matching traffic, stickiness, exposure recording, and
independence from a weighted split of the same sticky id.

Shares are checked over 10,000 distinct sticky ids within 4.5 binomial standard deviations
(sqrt(n·p·(1-p))) of the expected count: below 1e-5 false failures per check for an unbiased
hash; any mistake in the bounds or the salts is far outside.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tier_router.routing.engine import Rules
from tier_router.routing.loader import RulesError, parse_rules
from tier_router.routing.request import Chat
from tier_router.schema.quality import percent_to_buckets

MakeRules = Callable[..., Rules]
MakeChat = Callable[..., Chat]
N = 10_000
STICKY = "x-router-sticky-key"
SHORT = {"last_user_chars": {"max": 20}}


def within(count: int, n: int, share: float, sigmas: float = 4.5) -> bool:
    return abs(count - n * share) <= sigmas * math.sqrt(n * share * (1 - share))


def ids(n: int = N) -> list[dict[str, str]]:
    return [{STICKY: f"user-{i}"} for i in range(n)]


# --- rollouts -------------------------------------------------------------------------------------


@pytest.fixture
def rollout(make_rules: MakeRules) -> Rules:
    return make_rules([{"name": "new-route", "tier": "top", "rollout": "10%", "when": SHORT}])


def test_rollout_applies_to_its_share_of_matching_traffic(rollout: Rules, chat: MakeChat) -> None:
    decisions = [rollout.decide(chat("hi"), headers) for headers in ids()]
    applied = [d for d in decisions if d.rule_name == "new-route"]
    assert within(len(applied), N, 0.10), len(applied)
    assert {(d.tier, d.experiment, d.arm) for d in applied} == {("top", "rollout:new-route", "in")}
    rest = [d for d in decisions if d.rule_name is None]
    assert len(rest) == N - len(applied)
    assert {(d.tier, d.experiment, d.arm) for d in rest} == {("mid", "rollout:new-route", "out")}
    assert all(d.why.endswith("; rollout 10%") for d in applied)


def test_rollout_is_sticky(rollout: Rules, chat: MakeChat) -> None:
    for headers in ids(200):
        outcomes = {rollout.decide(chat(f"hi {j}"), headers).arm for j in range(10)}
        assert len(outcomes) == 1


def test_traffic_the_rule_does_not_match_is_never_exposed(rollout: Rules, chat: MakeChat) -> None:
    long = "x" * 100
    decisions = [rollout.decide(chat(long), headers) for headers in ids(2000)]
    assert {(d.rule_name, d.experiment, d.arm) for d in decisions} == {(None, None, None)}
    explicit = [rollout.decide(chat("hi", model="cheap"), headers) for headers in ids(200)]
    assert {(d.experiment, d.arm) for d in explicit} == {(None, None)}


def test_fractional_rollout(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules([{"name": "r", "tier": "top", "rollout": 2.5, "when": SHORT}])
    applied = sum(rules.decide(chat("hi"), h).rule_name == "r" for h in ids())
    assert within(applied, N, 0.025), applied


@pytest.mark.parametrize(
    ("value", "buckets"), [("10%", 1000), ("2.5%", 250), (2.5, 250), (100, 10_000), (" 0.01 % ", 1)]
)
def test_percent_forms(value: object, buckets: int) -> None:
    assert percent_to_buckets(value) == buckets


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("0%", "must be more than 0% and at most 100% (got '0%')"),
        (101, "must be more than 0% and at most 100% (got 101)"),
        ("0.001%", "the finest share is 0.01% (got '0.001%')"),
        ("ten", "not a percentage: 'ten' (give e.g. 10% or 2.5)"),
        (True, "give a percentage such as 10% or 2.5"),
        (None, "empty value: give a percentage, or remove the key"),
    ],
)
def test_bad_rollouts_name_the_rule_and_field(minimal: dict[str, Any], value: object, reason: str) -> None:
    minimal["rules"] = [
        {"name": "ok", "tier": "top", "when": SHORT},
        {"name": "r", "tier": "top", "rollout": value, "when": SHORT},
    ]
    with pytest.raises(RulesError) as info:
        parse_rules(minimal, "roll.yaml")
    assert str(info.value).splitlines()[1:] == [f"roll.yaml: rule 'r' (#2): rollout: {reason}"]


# --- experiments ----------------------------------------------------------------------------------


@pytest.fixture
def experiment(make_rules: MakeRules) -> Rules:
    return make_rules(
        [{"name": "treated", "tier": "top", "arm": "cheap-chat/treat", "when": SHORT}],
        experiments={"cheap-chat": {"arms": {"control": 30, "treat": 20}, "description": "d"}},
    )


def test_arm_shares_and_the_gate(experiment: Rules, chat: MakeChat) -> None:
    decisions = [experiment.decide(chat("hi"), headers) for headers in ids()]
    arms = Counter(d.arm for d in decisions)
    assert within(arms["control"], N, 0.30), arms
    assert within(arms["treat"], N, 0.20), arms
    assert within(arms[None], N, 0.50), arms  # half the ids are in no arm: not exposed
    for d in decisions:
        assert (d.rule_name == "treated") == (d.arm == "treat")
        assert d.experiment == ("cheap-chat" if d.arm else None)
    treated = next(d for d in decisions if d.arm == "treat")
    assert treated.why.endswith("; arm cheap-chat/treat")


def test_arms_are_sticky_and_unmatched_traffic_is_not_exposed(experiment: Rules, chat: MakeChat) -> None:
    for headers in ids(200):
        assert len({experiment.decide(chat(f"q{j}"), headers).arm for j in range(10)}) == 1
        long = experiment.decide(chat("y" * 50), headers)
        assert (long.experiment, long.arm, long.rule_name) == (None, None, None)


def test_first_exposure_wins(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [
            {"name": "rolled", "tier": "cheap", "rollout": "50%", "when": SHORT},
            {"name": "armed", "tier": "top", "arm": "e/b", "when": SHORT},
        ],
        experiments={"e": {"arms": {"a": 50, "b": 50}}},
    )
    seen = Counter(
        (d.rule_name, d.experiment, d.arm) for d in (rules.decide(chat("hi"), h) for h in ids(4000))
    )
    # turned away by the rollout, the request reaches the arm rule: the rollout's exposure stays
    assert set(seen) == {
        ("rolled", "rollout:rolled", "in"),
        ("armed", "rollout:rolled", "out"),
        (None, "rollout:rolled", "out"),
    }


def test_arm_and_rollout_on_one_rule(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [{"name": "both", "tier": "top", "arm": "e/b", "rollout": "50%", "when": SHORT}],
        experiments={"e": {"arms": {"a": 50, "b": 50}}},
    )
    decisions = [rules.decide(chat("hi"), h) for h in ids()]
    applied = sum(d.rule_name == "both" for d in decisions)
    assert within(applied, N, 0.25), applied
    assert {d.experiment for d in decisions} == {"e"}  # the arm's exposure comes first


def test_assignments_are_independent_of_a_split_of_the_same_id(make_rules: MakeRules, chat: MakeChat) -> None:
    """Arm, rollout and split use different salts: each joint cell holds its product share.
    With one salt for all three, the cells would be 50/0/0/50."""
    rules = make_rules(
        [
            {"name": "rolled", "tier": "top", "rollout": "50%", "when": {"has_tools": False}},
            {"name": "armed", "tier": "top", "arm": "e/x", "when": SHORT},
        ],
        tiers={
            "cheap": ["small"],
            "mid": ["medium"],
            "top": {"models": [{"model": "large", "weight": 1}, {"model": "medium", "weight": 1}]},
        },
        default_tier="top",
        experiments={"e": {"arms": {"x": 50, "y": 50}}},
    )
    headers = ids()
    # with tools the rollout rule does not match: the arm rule records the experiment
    with_tools = [rules.decide(chat("hi", tools=TOOLS), h) for h in headers]
    split_vs_arm = Counter((d.candidates[0].name, (d.experiment, d.arm)) for d in with_tools)
    # without, the rollout rule matches first: its exposure wins
    plain = [rules.decide(chat("hi"), h) for h in headers]
    split_vs_rollout = Counter((d.candidates[0].name, (d.experiment, d.arm)) for d in plain)
    assert {arm for _, arm in split_vs_arm} == {("e", "x"), ("e", "y")}
    assert {arm for _, arm in split_vs_rollout} == {("rollout:rolled", "in"), ("rollout:rolled", "out")}
    for counts in (split_vs_arm, split_vs_rollout):
        assert len(counts) == 4
        for cell in counts.values():
            assert within(cell, N, 0.25), counts


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("experiments", "arm", "line"),
    [
        (
            {"cheap-chat": {"arms": {"a": 50}}},
            "cheap-chta/a",
            "rule 'r' (#1): arm: unknown experiment 'cheap-chta' (known: cheap-chat);"
            " did you mean 'cheap-chat'?",
        ),
        (
            {"cheap-chat": {"arms": {"control": 50, "treat": 50}}},
            "cheap-chat/treatment",
            "rule 'r' (#1): arm: unknown arm 'treatment' of experiment 'cheap-chat' (known: control, treat)",
        ),
        ({}, "nope/a", "rule 'r' (#1): arm: unknown experiment 'nope' (none declared under experiments:)"),
        (
            {"e": {"arms": {"a": 60, "b": 50}}},
            "e/a",
            "experiment 'e': arms: the percents add up to 110, more than 100",
        ),
        ({"e": {"arms": {"a": 0}}}, "e/a", "experiment 'e': arms.a: Input should be greater than 0 (got 0)"),
        (
            {"e": {"arms": {"a": 0.001}}},
            "e/a",
            "experiment 'e': arms.a: the finest share is 0.01% (got 0.001)",
        ),
        (
            {"e": {"arms": {"a": 5}}},
            "no-slash",
            "rule 'r' (#1): arm: give <experiment>/<arm>, e.g. cheap-chat/control (got 'no-slash')",
        ),
        ({"e": {"arms": {"a": 5}}}, "e/", "rule 'r' (#1): arm: give <experiment>/<arm>"),
    ],
)
def test_experiment_errors_name_the_rule_and_field(
    minimal: dict[str, Any], experiments: dict[str, Any], arm: str, line: str
) -> None:
    minimal["experiments"] = experiments
    minimal["rules"] = [{"name": "r", "tier": "top", "arm": arm, "when": SHORT}]
    with pytest.raises(RulesError) as info:
        parse_rules(minimal, "exp.yaml")
    assert any(text.startswith(f"exp.yaml: {line}") for text in str(info.value).splitlines()), str(info.value)


def test_an_experiment_no_rule_uses_is_an_error(minimal: dict[str, Any]) -> None:
    minimal["experiments"] = {"used": {"arms": {"a": 10}}, "forgotten": {"arms": {"a": 10}}}
    minimal["rules"] = [{"name": "r", "tier": "top", "arm": "used/a", "when": SHORT}]
    with pytest.raises(RulesError) as info:
        parse_rules(minimal, "exp.yaml")
    assert str(info.value).splitlines()[1:] == [
        "exp.yaml: experiment 'forgotten': no rule uses it: gate a rule with `arm: forgotten/<arm>`,"
        " or remove the experiment"
    ]


def test_experiment_names_may_hold_a_slash(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [{"name": "r", "tier": "top", "arm": "team/exp-1/b", "when": SHORT}],
        experiments={"team/exp-1": {"arms": {"a": 50, "b": 50}}},
    )
    arms = Counter(rules.decide(chat("hi"), h).arm for h in ids(1000))
    assert set(arms) == {"a", "b"}


def test_examples_check_arms_with_a_sticky_key(experiment: Rules) -> None:
    from tier_router.routing.examples import Example, run_example

    outcomes = {}
    for i in range(40):
        example = Example.model_validate(
            {"name": f"e{i}", "prompt": "hi", "key": f"key-{i}", "expect": {"arm": "cheap-chat/treat"}}
        )
        outcomes[i] = run_example(experiment, example)
    treated = [i for i, o in outcomes.items() if o.ok]
    assert treated
    assert len(treated) < 40
    for i, outcome in outcomes.items():
        arm = experiment.decide(outcome.example.chat_request(), key=f"key-{i}").arm
        assert outcome.ok == (arm == "treat")
        if not outcome.ok:
            got = f"cheap-chat/{arm}" if arm else "none"
            assert outcome.mismatches == (f"arm expected 'cheap-chat/treat', got {got!r}",)
