"""The decision engine: rule order, defaults, explicit names, aliases, priority, text handling,
context-window fitting, the Decision object, and the token estimate."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
from tier_router.errors import RequestError
from tier_router.routing.engine import Decision, DecisionKind, Rules, UnknownModelError, fit_context
from tier_router.routing.request import Chat
from tier_router.routing.tokens import estimate_tokens

MakeRules = Callable[..., Rules]
MakeChat = Callable[..., Chat]

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def names(decision: Decision) -> list[str]:
    return [route.name for route in decision.candidates]


# --- which rule ---------------------------------------------------------------------------------


def test_first_matching_rule_wins(make_rules: MakeRules, chat: MakeChat) -> None:
    first = {"name": "first", "tier": "cheap", "when": {"last_user_matches": "hello"}}
    second = {"name": "second", "tier": "top", "when": {"last_user_chars": {"max": 100}}}
    decision = make_rules([first, second]).decide(chat("hello"))
    assert (decision.label, decision.tier, names(decision)) == ("first", "cheap", ["small", "medium"])
    decision = make_rules([second, first]).decide(chat("hello"))
    assert (decision.label, decision.tier) == ("second", "top")


def test_default_tier_when_no_rule_matches(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules([{"name": "never", "tier": "top", "when": {"has_tools": True}}])
    decision = rules.decide(chat("hello"))
    assert decision.label == "default"
    assert decision.tier == "mid"
    assert decision.why == "no rule matched"
    assert names(decision) == ["medium", "large"]
    assert decision.requested_model == "auto"


def test_explicit_tier_skips_the_rules(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules([{"name": "everything", "tier": "cheap", "when": {"last_user_chars": {"min": 0}}}])
    assert rules.decide(chat("hi")).label == "everything"
    decision = rules.decide(chat("hi", model="top"))
    assert (decision.label, decision.tier, decision.requested_model) == ("explicit", "top", "top")
    assert names(decision) == ["large", "medium", "small"]
    assert decision.why == "request named tier 'top'"


def test_explicit_model_first_then_rest_of_its_tier(make_rules: MakeRules, chat: MakeChat) -> None:
    decision = make_rules().decide(chat("hi", model="large"))
    assert (decision.label, decision.tier) == ("explicit", "mid")  # the first tier listing it
    assert names(decision) == ["large", "medium"]
    assert decision.why == "request named model 'large'"


def test_explicit_model_without_fallback(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(routing={"explicit_model_fallback": False})
    decision = rules.decide(chat("hi", model="large"))
    assert (decision.label, decision.tier) == ("explicit", "mid")
    assert names(decision) == ["large"]
    assert names(rules.decide(chat("hi", model="top"))) == ["large", "medium", "small"]  # tiers unchanged


def test_explicit_model_in_no_tier(make_rules: MakeRules, minimal: dict[str, Any], chat: MakeChat) -> None:
    solo = {"provider": "local", "id": "solo-1", "price": {"input": 0, "output": 0}}
    rules = make_rules(models={**minimal["models"], "solo": solo})
    decision = rules.decide(chat("hi", model="solo"))
    assert (decision.tier, names(decision)) == (None, ["solo"])


def test_shipped_explicit_tier_and_model(shipped: Rules, chat: MakeChat) -> None:
    decision = shipped.decide(chat("Prove it step by step", model="premium"))
    assert (decision.label, decision.tier) == ("explicit", "premium")
    assert names(decision) == ["claude-sonnet-4.5", "gpt-4.1", "gemini-2.5-pro"]
    decision = shipped.decide(chat("hi", model="gemini-2.5-flash"))
    assert (decision.label, decision.tier) == ("explicit", "standard")
    assert names(decision) == ["gemini-2.5-flash", "gpt-4.1-mini", "claude-haiku-4.5"]


def test_aliases(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [{"name": "greet", "tier": "cheap", "when": {"last_user_matches": "^hi$"}}],
        aliases={"gpt-4o": "auto", "gpt-4o-mini": "cheap", "legacy": "large"},
    )
    to_auto = rules.decide(chat("hi", model="gpt-4o"))
    assert (to_auto.label, to_auto.tier, to_auto.requested_model) == ("greet", "cheap", "gpt-4o")
    assert rules.decide(chat("hello there", model="gpt-4o")).label == "default"
    to_tier = rules.decide(chat("hi", model="gpt-4o-mini"))
    assert (to_tier.label, to_tier.tier, names(to_tier)) == ("explicit", "cheap", ["small", "medium"])
    to_model = rules.decide(chat("hi", model="legacy"))
    assert (to_model.label, names(to_model)) == ("explicit", ["large", "medium"])


def test_unknown_model_lists_valid_names(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(aliases={"gpt-4o": "auto"})
    with pytest.raises(UnknownModelError) as info:
        rules.decide(chat("hi", model="gpt-5-ultra"))
    valid = ["auto", "cheap", "gpt-4o", "large", "medium", "mid", "small", "top"]
    assert info.value.requested == "gpt-5-ultra"
    assert info.value.valid == valid
    assert (
        str(info.value)
        == f"The model 'gpt-5-ultra' does not exist on this router. Use one of: {', '.join(valid)}."
    )


def test_model_names_are_case_sensitive(shipped: Rules, chat: MakeChat) -> None:
    with pytest.raises(UnknownModelError):
        shipped.decide(chat("hi", model="Premium"))


def test_unknown_model_is_a_request_error_and_a_lookup_error(make_rules: MakeRules, chat: MakeChat) -> None:
    with pytest.raises(UnknownModelError) as info:
        make_rules().decide(chat("hi", model="nope"))
    assert isinstance(info.value, RequestError)
    assert isinstance(info.value, LookupError)


# --- how the tier was chosen: typed, whatever the rules are called ------------------------------


def test_the_kind_says_how_the_tier_was_chosen(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules([{"name": "greet", "tier": "cheap", "when": {"last_user_matches": "^hi$"}}])
    by_rule, default, named = (
        rules.decide(chat("hi")),
        rules.decide(chat("hello")),
        rules.decide(chat("hi", model="top")),
    )
    assert (by_rule.kind, by_rule.rule_name, by_rule.label) == (DecisionKind.AUTO, "greet", "greet")
    assert (default.kind, default.rule_name, default.label) == (DecisionKind.DEFAULT, None, "default")
    assert (named.kind, named.rule_name, named.label) == (DecisionKind.EXPLICIT, None, "explicit")
    assert [d.as_dict()["kind"] for d in (by_rule, default, named)] == ["auto", "default", "explicit"]


def test_rules_named_explicit_and_default_are_ordinary_rules(make_rules: MakeRules, chat: MakeChat) -> None:
    """Before `kind`, a rule called `explicit` looked like a request that named its tier (a
    tier-restricted key then got 403 on `model: auto`), and one called `default` like no match."""
    rules = make_rules(
        [
            {"name": "explicit", "tier": "cheap", "when": {"last_user_matches": "^a$"}},
            {"name": "default", "tier": "top", "when": {"last_user_matches": "^b$"}},
        ]
    )
    a, b, neither, named = (
        rules.decide(chat("a")),
        rules.decide(chat("b")),
        rules.decide(chat("c")),
        rules.decide(chat("a", model="cheap")),
    )
    assert (a.kind, a.rule_name, a.tier) == (DecisionKind.AUTO, "explicit", "cheap")
    assert (b.kind, b.rule_name, b.tier) == (DecisionKind.AUTO, "default", "top")
    assert (neither.kind, neither.rule_name, neither.tier) == (DecisionKind.DEFAULT, None, "mid")
    assert (named.kind, named.rule_name, named.tier) == (DecisionKind.EXPLICIT, None, "cheap")
    assert a.kind is not DecisionKind.EXPLICIT  # what a tier check on the key must ask


# --- priority -----------------------------------------------------------------------------------

LOW_RULE = {"name": "batchy", "tier": "cheap", "priority": "low", "when": {"last_user_matches": "batch"}}


@pytest.mark.parametrize(
    ("prompt", "headers", "metadata", "expected"),
    [
        ("batch", {"x-priority": "high"}, {"priority": "normal"}, ("high", "header")),
        ("batch", {}, {"priority": "high"}, ("high", "metadata")),
        ("batch", {}, None, ("low", "rule")),
        ("other", {}, None, ("normal", "default")),
        ("batch", {"x-priority": "urgent"}, {"priority": "high"}, ("high", "metadata")),  # invalid ignored
        ("batch", {"x-priority": "urgent"}, {"priority": "soon"}, ("low", "rule")),
        ("other", {"x-priority": "HIGH"}, None, ("high", "header")),
        ("other", {}, {"priority": "Low"}, ("low", "metadata")),
    ],
)
def test_priority_sources_in_order(
    make_rules: MakeRules,
    chat: MakeChat,
    prompt: str,
    headers: dict[str, str],
    metadata: dict[str, str] | None,
    expected: tuple[str, str],
) -> None:
    decision = make_rules([LOW_RULE]).decide(chat(prompt, metadata=metadata), headers)
    assert (decision.priority, decision.priority_source) == expected


def test_priority_sources_are_configurable(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [LOW_RULE], priority={"header": "x-importance", "metadata_key": None, "default": "high"}
    )
    decision = rules.decide(chat("other", metadata={"priority": "low"}), {"x-priority": "low"})
    assert (decision.priority, decision.priority_source) == ("high", "default")
    decision = rules.decide(chat("other"), {"x-importance": "low"})
    assert (decision.priority, decision.priority_source) == ("low", "header")


def test_explicit_requests_still_read_priority(make_rules: MakeRules, chat: MakeChat) -> None:
    decision = make_rules([LOW_RULE]).decide(chat("batch", model="top"), {"x-priority": "high"})
    assert (decision.label, decision.priority, decision.priority_source) == ("explicit", "high", "header")
    decision = make_rules([LOW_RULE]).decide(chat("batch", model="top"))
    assert (decision.priority, decision.priority_source) == ("normal", "default")  # no rule ran


def test_priority_header_name_in_rules_is_case_insensitive(make_rules: MakeRules, chat: MakeChat) -> None:
    """Request headers arrive lower-cased, so `priority: {header: X-Priority}` must still match."""
    rules = make_rules(priority={"header": "X-Priority"})
    decision = rules.decide(chat("hi"), {"x-priority": "high"})
    assert (decision.priority, decision.priority_source) == ("high", "header")


# --- text handling ------------------------------------------------------------------------------


def test_unicode_text_in_regex_and_length_conditions(make_rules: MakeRules, chat: MakeChat) -> None:
    rules = make_rules(
        [
            {"name": "japanese", "tier": "cheap", "when": {"last_user_matches": "翻訳|日本語"}},
            {"name": "emoji", "tier": "top", "when": {"any_text_matches": "🚀+"}},
            {
                "name": "cyrillic",
                "tier": "cheap",
                "when": {"last_user_matches": {"pattern": "привет", "ignore_case": True}},
            },
            {"name": "short", "tier": "mid", "when": {"last_user_chars": {"max": 3}}},
        ]
    )
    assert rules.decide(chat("これを日本語に翻訳して")).label == "japanese"
    assert rules.decide(chat("launch 🚀🚀 now")).label == "emoji"
    assert rules.decide(chat("Привет, как дела?")).label == "cyrillic"
    short = rules.decide(chat("你好吗"))
    assert short.label == "short"
    assert short.features.last_user_chars == 3


def test_token_estimate_differs_for_non_ascii(shipped: Rules, chat: MakeChat) -> None:
    ascii_ = shipped.decide(chat("a" * 300)).features
    cjk = shipped.decide(chat("日" * 300)).features
    assert ascii_.last_user_chars == cjk.last_user_chars == 300
    assert ascii_.last_user_tokens == 75
    assert cjk.last_user_tokens == 300
    # 300 CJK characters exceed the shipped short-chat budget (80 tokens); 300 ASCII do too,
    # but 200 ASCII do not while 200 CJK still do
    assert shipped.decide(chat("a" * 200)).label == "short-chat"
    assert shipped.decide(chat("日" * 200)).label == "default"


@pytest.mark.parametrize("content", ["", None, []], ids=["empty-string", "none", "no-parts"])
def test_empty_messages(make_rules: MakeRules, chat: MakeChat, content: Any) -> None:
    rules = make_rules(
        [
            {"name": "has-text", "tier": "top", "when": {"last_user_matches": "\\S"}},
            {
                "name": "blank",
                "tier": "cheap",
                "when": {"not": {"last_user_matches": "\\S"}, "last_user_chars": {"max": 0}},
            },
        ]
    )
    decision = rules.decide(chat(messages=[{"role": "user", "content": content}]))
    assert decision.label == "blank"
    features = decision.features
    assert (features.last_user_chars, features.last_user_tokens, features.conversation_chars) == (0, 0, 0)
    assert features.conversation_tokens == 4  # the per-message overhead only
    assert features.message_count == 1


def test_multi_part_content(make_rules: MakeRules, chat: MakeChat) -> None:
    parts = [
        {"type": "text", "text": "first part"},
        IMAGE,
        {"type": "text", "text": "second part"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    rules = make_rules(
        [{"name": "across-parts", "tier": "top", "when": {"last_user_matches": "part\\nsecond"}}]
    )
    decision = rules.decide(chat(messages=[{"role": "user", "content": parts}]))
    assert decision.label == "across-parts"  # text parts joined with a newline
    features = decision.features
    assert features.last_user_text == "first part\nsecond part"
    assert features.last_user_chars == len("first part\nsecond part")
    assert (features.has_images, features.image_count) == (True, 2)


def test_system_and_developer_text(shipped: Rules, chat: MakeChat) -> None:
    request = chat(
        messages=[
            {"role": "system", "content": "sys one"},
            {"role": "developer", "content": "dev two"},
            {"role": "user", "content": "hi"},
        ]
    )
    features = shipped.decide(request).features
    assert features.system_text == "sys one\ndev two"
    assert features.all_text == "sys one\ndev two\nhi"


def test_last_user_message_is_the_last_user_message(shipped: Rules, chat: MakeChat) -> None:
    request = chat(
        messages=[
            {"role": "user", "content": "Prove that sqrt(2) is irrational."},
            {"role": "assistant", "content": "Here is the proof..."},
            {"role": "user", "content": "thanks!"},
            {"role": "assistant", "content": "You're welcome. Anything to prove next?"},
        ]
    )
    decision = shipped.decide(request)
    assert decision.features.last_user_text == "thanks!"
    assert decision.label == "short-chat"  # not hard-reasoning: the proof was an earlier turn


# --- context window -----------------------------------------------------------------------------


@pytest.fixture
def windowed(make_rules: MakeRules, minimal: dict[str, Any]) -> Rules:
    models = minimal["models"]
    models["small"]["context_window"] = 1_000
    models["medium"]["context_window"] = 10_000
    models["large"]["context_window"] = 100_000
    return make_rules(models=models)


def test_too_small_context_windows_are_skipped(windowed: Rules, chat: MakeChat) -> None:
    decision = windowed.decide(chat("a" * 8_000, model="top"))  # ~2004 tokens
    assert names(decision) == ["large", "medium"]
    assert decision.skipped == (("small", "context window 1000 < ~2004 tokens needed"),)
    assert decision.as_dict()["skipped"] == [
        {"model": "small", "reason": "context window 1000 < ~2004 tokens needed"}
    ]


def test_requested_output_counts_toward_the_window(windowed: Rules, chat: MakeChat) -> None:
    decision = windowed.decide(chat("a" * 8_000, model="top", max_tokens=9_000))  # ~11004 tokens
    assert names(decision) == ["large"]
    assert [name for name, _ in decision.skipped] == ["medium", "small"]


def test_chain_kept_whole_when_every_model_is_too_small(windowed: Rules, chat: MakeChat) -> None:
    decision = windowed.decide(chat("a" * 40_000, model="cheap"))  # ~10004 tokens > 1000 and 10000
    assert names(decision) == ["small", "medium"]
    assert decision.skipped == ()


def test_shipped_chains_skip_small_windows_for_huge_conversations(shipped: Rules, chat: MakeChat) -> None:
    """~225K tokens: deepseek-chat (128K) and Claude (200K) are skipped, the 1M-window models stay."""
    decision = shipped.decide(chat("a" * 900_000, model="budget"))
    assert names(decision) == ["gemini-2.5-flash-lite", "gpt-4.1-nano"]
    assert [name for name, _ in decision.skipped] == ["deepseek-chat"]
    chain, skipped = fit_context(shipped.tiers["premium"], decision.features)
    assert [r.name for r in chain] == ["gpt-4.1", "gemini-2.5-pro"]
    assert [name for name, _ in skipped] == ["claude-sonnet-4.5"]
    assert shipped.decide(chat("a" * 900_000)).label == "long-context"


def test_unknown_context_window_is_never_skipped(make_rules: MakeRules, chat: MakeChat) -> None:
    decision = make_rules().decide(chat("a" * 900_000, model="top"))
    assert names(decision) == ["large", "medium", "small"]
    assert decision.skipped == ()


# --- the Decision object --------------------------------------------------------------------------


def test_decision_is_immutable(shipped: Rules, chat: MakeChat) -> None:
    decision = shipped.decide(chat("hi"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.tier = "premium"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.candidates[0].model_id = "x"  # type: ignore[misc]
    assert isinstance(decision.candidates, tuple)
    assert isinstance(decision.skipped, tuple)


def test_as_dict_is_json_and_holds_no_prompt_text(shipped: Rules, chat: MakeChat) -> None:
    secret_user = "the launch codes are XYZZY-4242, summarize them"
    secret_system = "internal system prompt PLUGH-1717"
    decision = shipped.decide(chat(secret_user, system=secret_system))
    data = decision.as_dict()
    assert {"tier", "kind", "rule", "chain", "features"} <= set(data)
    assert data["tier"] == "budget"
    assert (data["kind"], data["rule"]) == ("auto", "simple-transforms")
    assert [link["model"] for link in data["chain"]] == [
        "deepseek-chat",
        "gemini-2.5-flash-lite",
        "gpt-4.1-nano",
    ]
    assert data["features"]["message_count"] == 2
    text = json.dumps(data)
    for fragment in ("XYZZY", "launch codes", "PLUGH", "internal system prompt"):
        assert fragment not in text
    assert not {"last_user_text", "system_text", "all_text"} & set(data["features"])


def test_decide_without_headers(shipped: Rules, chat: MakeChat) -> None:
    assert shipped.decide(chat("hi")).label == "short-chat"
    assert shipped.decide(chat("hi"), None).features.headers == {}


# --- token estimate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("abcd", 1),
        ("abcde", 2),
        ("word " * 200, 250),  # ASCII: ~chars/4
        ("日本語" * 100, 300),  # CJK: ~1 per character
        ("😀", 2),  # 4 UTF-8 bytes
        ("привет", 4),  # Cyrillic: 12 bytes / 3
    ],
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens
