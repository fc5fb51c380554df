"""Weighted tiers: shares, stickiness, sticky sources, retier/escalate keeping the pick, and the
raw sticky id never leaving the engine.

Share tests decide 10,000 requests with distinct sticky ids and accept a count within 4.5
binomial standard deviations of its expectation (sqrt(n·p·(1-p))): for an unbiased hash the
chance of a false failure is below 1e-5 per check, while a wrong share (a bound off by one
model, a bisect off by one, an ignored weight) is tens of sigmas away.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.request import Chat

MakeRules = Callable[..., Rules]
MakeChat = Callable[..., Chat]
N = 10_000
STICKY = "x-router-sticky-key"

WEIGHTED_MID = {
    "models": [
        {"model": "medium", "weight": 70},
        {"model": "large", "weight": 20},
        {"model": "small", "weight": 10},
    ]
}


def within(count: int, n: int, share: float, sigmas: float = 4.5) -> bool:
    """`count` of `n` trials is within `sigmas` binomial standard deviations of n·share."""
    return abs(count - n * share) <= sigmas * math.sqrt(n * share * (1 - share))


def first(decision: Decision) -> str:
    return decision.candidates[0].name


def names(decision: Decision) -> list[str]:
    return [route.name for route in decision.candidates]


@pytest.fixture
def weighted(make_rules: MakeRules) -> Rules:
    tiers = {"cheap": ["small", "medium"], "mid": WEIGHTED_MID, "top": ["large", "medium", "small"]}
    return make_rules(tiers=tiers)


def test_shares_hold_over_distinct_sticky_ids(weighted: Rules, chat: MakeChat) -> None:
    request = chat("hi")
    picks = Counter(first(weighted.decide(request, {STICKY: f"user-{i}"})) for i in range(N))
    assert set(picks) == {"medium", "large", "small"}
    for model, share in (("medium", 0.7), ("large", 0.2), ("small", 0.1)):
        assert within(picks[model], N, share), (model, picks)


def test_the_pick_goes_first_then_the_rest_in_file_order(weighted: Rules, chat: MakeChat) -> None:
    chains = {tuple(names(weighted.decide(chat("hi"), {STICKY: f"u{i}"}))) for i in range(300)}
    assert chains == {
        ("medium", "large", "small"),
        ("large", "medium", "small"),
        ("small", "medium", "large"),
    }


def test_split_is_sticky(weighted: Rules, chat: MakeChat) -> None:
    for i in range(20):
        picks = {first(weighted.decide(chat(f"prompt {j}"), {STICKY: f"user-{i}"})) for j in range(50)}
        assert len(picks) == 1


def test_without_a_sticky_id_the_pick_is_random(weighted: Rules, chat: MakeChat) -> None:
    decisions = [weighted.decide(chat("hi")) for _ in range(300)]
    assert {d.sticky for d in decisions} == {"none"}
    assert {first(d) for d in decisions} == {"medium", "large", "small"}


def test_a_file_that_places_nothing_by_sticky_id_does_not_read_it(
    make_rules: MakeRules, chat: MakeChat
) -> None:
    decision = make_rules().decide(chat("hi", user="alice"), {STICKY: "s"}, key="k")
    assert (decision.sticky, decision.sticky_digest, decision.split) == ("unused", b"", None)


def test_zero_weight_is_a_fallback_never_first(make_rules: MakeRules, chat: MakeChat) -> None:
    tier = {"models": [{"model": "medium", "weight": 0}, {"model": "large", "weight": 5}, "small"]}
    rules = make_rules(tiers={**make_rules().spec.tiers, "mid": tier})
    chains = {tuple(names(rules.decide(chat("hi"), {STICKY: f"u{i}"}))) for i in range(200)}
    assert chains == {("large", "medium", "small")}


def test_unweighted_tiers_keep_the_file_order(weighted: Rules, chat: MakeChat) -> None:
    decision = weighted.decide(chat("hi", model="top"), {STICKY: "u1"})
    assert (names(decision), decision.split) == (["large", "medium", "small"], None)
    assert weighted.tiers["mid"] == tuple(weighted.routes[n] for n in ("medium", "large", "small"))
    assert weighted.spec.tiers["mid"] == ["medium", "large", "small"]  # readers of names are unchanged


def test_sources_in_order_and_the_split_follows_the_id_not_the_source(
    weighted: Rules, chat: MakeChat
) -> None:
    """Default order: the sticky header, then `user`, then the router key's name."""
    both = weighted.decide(chat("hi", user="alice"), {STICKY: "team-7"}, key="key-1")
    assert both.sticky == f"header:{STICKY}"
    assert weighted.decide(chat("hi", user="alice"), {}, key="key-1").sticky == "user"
    assert weighted.decide(chat("hi"), {}, key="key-1").sticky == "key"
    # the same id, whatever its source, lands on the same pick; a different one may not
    ids = [f"id-{i}" for i in range(200)]
    by_header = [first(weighted.decide(chat("hi"), {STICKY: i})) for i in ids]
    by_user = [first(weighted.decide(chat("hi", user=i))) for i in ids]
    by_key = [first(weighted.decide(chat("hi"), key=i)) for i in ids]
    assert by_header == by_user == by_key
    header_wins = [first(weighted.decide(chat("hi", user="fixed-user"), {STICKY: i})) for i in ids]
    assert header_wins == by_header


def test_configured_sources_replace_the_default(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        tiers={"cheap": ["small"], "mid": WEIGHTED_MID, "top": ["large"]},
        routing={"sticky": ["metadata:tenant", "header:X-Team"]},
    )
    ids = [f"t-{i}" for i in range(200)]
    by_metadata = [rules.decide(chat("hi", metadata={"tenant": i}), {"x-team": "z"}) for i in ids]
    assert {d.sticky for d in by_metadata} == {"metadata:tenant"}
    by_team = [rules.decide(chat("hi", user="ignored"), {"x-team": i, STICKY: "ignored"}) for i in ids]
    assert {d.sticky for d in by_team} == {"header:x-team"}  # lower-cased at load
    assert [first(d) for d in by_metadata] == [first(d) for d in by_team]
    assert rules.decide(chat("hi", user="u"), {STICKY: "s"}, key="k").sticky == "none"


def test_explicit_tier_gets_the_split_explicit_model_does_not(weighted: Rules, chat: MakeChat) -> None:
    tier_picks = Counter(
        first(weighted.decide(chat("hi", model="mid"), {STICKY: f"u{i}"})) for i in range(2000)
    )
    assert set(tier_picks) == {"medium", "large", "small"}
    for i in range(50):
        decision = weighted.decide(chat("hi", model="large"), {STICKY: f"u{i}"})
        assert (names(decision)[0], decision.split) == ("large", None)


def test_retier_and_escalate_apply_the_new_tiers_split_with_the_same_id(
    make_rules: MakeRules, chat: MakeChat
) -> None:
    tiers = {
        "cheap": {"models": ["small"], "cascade": {"to": "mid", "on": ["truncated"]}},
        "mid": WEIGHTED_MID,
        "top": ["large", "medium", "small"],
    }
    rules = make_rules(tiers=tiers, default_tier="cheap")
    for i in range(300):
        headers = {STICKY: f"user-{i}"}
        direct = rules.decide(chat("hi", model="mid"), headers)
        routed = rules.decide(chat("hi"), headers)
        assert routed.tier == "cheap"
        moved = rules.retier(routed, "mid", "pacing")
        escalated = rules.escalate(routed, "truncated: cut off")
        assert names(moved) == names(escalated) == names(direct)
        assert moved.split == escalated.split == direct.split is not None


def test_split_text_names_the_pick_and_its_share(weighted: Rules, chat: MakeChat) -> None:
    texts = {weighted.decide(chat("hi"), {STICKY: f"u{i}"}).split for i in range(300)}
    assert texts == {
        "medium: 70% of tier 'mid' by weight",
        "large: 20% of tier 'mid' by weight",
        "small: 10% of tier 'mid' by weight",
    }


def test_the_raw_sticky_id_never_leaves_the_engine(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        tiers={"cheap": ["small"], "mid": WEIGHTED_MID, "top": ["large"]},
        experiments={"e": {"arms": {"a": 50, "b": 50}}},
        rules=[
            {
                "name": "r",
                "tier": "mid",
                "arm": "e/a",
                "rollout": "50%",
                "when": {"message_count": {"min": 1}},
            }
        ],
    )
    secrets = ("SECRET-header-id", "SECRET-user-id", "SECRET-key-name", "SECRET-metadata")
    requests: list[tuple[Chat, dict[str, str], str | None]] = [
        (chat("hi", user=secrets[1], metadata={"m": secrets[3]}), {STICKY: secrets[0]}, secrets[2]),
        (chat("hi", user=secrets[1]), {}, secrets[2]),
        (chat("hi"), {}, secrets[2]),
    ]
    for request, headers, key in requests:
        decision = rules.decide(request, headers, key=key)
        shown: list[Any] = [
            json.dumps(decision.as_dict()),
            repr(decision),
            str(decision),
            repr(rules.retier(decision, "top", "pacing")),
            repr(decision.features),
        ]
        for text in shown:
            for secret in secrets:
                assert secret not in text
        assert decision.sticky_digest
        assert all(s.encode() not in decision.sticky_digest for s in secrets)
