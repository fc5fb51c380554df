"""Every condition type, the combinators, and the `why` explanations.

`holds(when, request, headers)` builds a one-rule file from the minimal dict and says whether
that rule matched (else the request fell to the default tier).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from tier_router.routing.engine import Rules
from tier_router.routing.request import Chat

Holds = Callable[..., bool]
MakeChat = Callable[..., Chat]

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


# --- regex conditions ---------------------------------------------------------------------------


def test_last_user_matches_bare_string_is_case_sensitive(holds: Holds) -> None:
    when = {"last_user_matches": r"\brefactor\b"}
    assert holds(when, "please refactor this module")
    assert not holds(when, "please REFACTOR this module")
    assert not holds(when, "refactoring is fun")  # \b
    assert not holds(when, "nothing to see")


@pytest.mark.parametrize(("ignore_case", "expected"), [(True, True), (False, False)])
def test_last_user_matches_ignore_case(holds: Holds, ignore_case: bool, expected: bool) -> None:
    when = {"last_user_matches": {"pattern": "refactor", "ignore_case": ignore_case}}
    assert holds(when, "Please REFACTOR this") is expected
    assert holds(when, "please refactor this")  # exact case holds either way


def test_ignore_case_folds_non_ascii(holds: Holds) -> None:
    assert holds({"last_user_matches": {"pattern": "привет", "ignore_case": True}}, "ПРИВЕТ, мир")
    assert not holds({"last_user_matches": {"pattern": "привет"}}, "ПРИВЕТ, мир")


def test_last_user_matches_only_the_last_user_message(holds: Holds, chat: MakeChat) -> None:
    when = {"last_user_matches": "refactor"}
    earlier = chat(
        messages=[
            {"role": "user", "content": "refactor this"},
            {"role": "assistant", "content": "done: refactor complete"},
            {"role": "user", "content": "thanks"},
        ]
    )
    assert not holds(when, earlier)
    # the last *user* message counts even when an assistant / tool message follows it
    later = chat(
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "user", "content": "refactor this"},
            {"role": "assistant", "content": "sure"},
            {"role": "tool", "content": "result"},
        ]
    )
    assert holds(when, later)


@pytest.mark.parametrize("role", ["system", "developer"])
def test_system_matches_system_and_developer_roles(holds: Holds, chat: MakeChat, role: str) -> None:
    when = {"system_matches": "you are a lawyer"}
    request = chat(
        messages=[{"role": role, "content": "you are a lawyer"}, {"role": "user", "content": "hi"}]
    )
    assert holds(when, request)


def test_system_matches_ignores_user_text(holds: Holds, chat: MakeChat) -> None:
    when = {"system_matches": "lawyer"}
    assert not holds(when, chat("be my lawyer"))
    assert not holds(when, chat("hi", system="you are a poet"))
    assert holds(when, chat("hi", system="You are a LAWYER, a lawyer"))


def test_any_text_matches_every_role(holds: Holds, chat: MakeChat) -> None:
    when = {"any_text_matches": "```"}
    for role in ("system", "user", "assistant", "tool"):
        messages = [{"role": role, "content": "see ```code```"}]
        if role != "user":
            messages.append({"role": "user", "content": "and?"})
        assert holds(when, chat(messages=messages)), role
    assert not holds(when, chat("no fences here"))


def test_any_text_matches_ignore_case(holds: Holds, chat: MakeChat) -> None:
    request = chat(messages=[{"role": "assistant", "content": "SELECT 1"}, {"role": "user", "content": "ok"}])
    assert holds({"any_text_matches": {"pattern": "select", "ignore_case": True}}, request)
    assert not holds({"any_text_matches": {"pattern": "select", "ignore_case": False}}, request)


def test_regexes_over_many_rules_keep_their_own_index(
    make_rules: Callable[..., Rules], chat: MakeChat
) -> None:
    """All patterns on one text share an RE2 set: each hit must map back to its own rule."""
    targets = ["last_user_matches", "system_matches", "any_text_matches"]
    rules = make_rules(
        [{"name": f"r{i}", "tier": "cheap", "when": {targets[i % 3]: f"\\bword{i}\\b"}} for i in range(30)]
    )
    for i in range(30):
        field = targets[i % 3]
        if field == "system_matches":
            request = chat("hi", system=f"word{i}")
        elif field == "last_user_matches":
            request = chat(f"say word{i} now")
        else:
            request = chat(
                messages=[{"role": "assistant", "content": f"word{i}"}, {"role": "user", "content": "k"}]
            )
        assert rules.decide(request).label == f"r{i}"


def test_regex_sets_are_scanned_lazily(make_rules: Callable[..., Rules], chat: MakeChat) -> None:
    """Cheap conditions run first; a text is scanned at most once per request, and only if needed."""
    rules = make_rules(
        [
            {"name": "a", "tier": "top", "when": {"has_tools": True, "last_user_matches": "x"}},
            {"name": "b", "tier": "top", "when": {"last_user_matches": "y"}},
            {"name": "c", "tier": "top", "when": {"last_user_matches": "z"}},
        ]
    )
    calls: list[str] = []
    match = rules.sets.match

    def counting(target: Any, text: str) -> frozenset[int]:
        calls.append(target)
        return match(target, text)

    rules.sets.match = counting  # type: ignore[method-assign]
    assert rules.decide(chat("no tools here: x")).label == "default"
    assert calls == ["last_user"]  # rule a never scanned (has_tools failed first); b and c share one scan
    calls.clear()
    assert rules.decide(chat("hi", tools=[TOOL])).label == "default"
    assert calls == ["last_user"]


def test_regex_matching_empty_text_holds_on_an_empty_message(holds: Holds, chat: MakeChat) -> None:
    """BUG: RegexSets.match skips empty texts, so a rule for blank prompts never fires."""
    assert holds({"last_user_matches": r"^\s*$"}, chat("   "))
    assert holds({"last_user_matches": r"^\s*$"}, chat(""))


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [(4, False), (5, True), (7, True), (10, True), (11, False)])
def test_last_user_chars_bounds_are_inclusive(holds: Holds, length: int, expected: bool) -> None:
    assert holds({"last_user_chars": {"min": 5, "max": 10}}, "x" * length) is expected


def test_ranges_with_one_bound(holds: Holds) -> None:
    assert holds({"last_user_chars": {"min": 3}}, "abc")
    assert holds({"last_user_chars": {"min": 3}}, "x" * 10_000)
    assert not holds({"last_user_chars": {"min": 3}}, "ab")
    assert holds({"last_user_chars": {"max": 3}}, "abc")
    assert holds({"last_user_chars": {"max": 3}}, "")
    assert not holds({"last_user_chars": {"max": 3}}, "abcd")
    assert holds({"last_user_chars": {"min": 0, "max": 0}}, "")


def test_last_user_chars_counts_characters_not_bytes(holds: Holds) -> None:
    assert holds({"last_user_chars": {"max": 4}}, "日本語😀")  # 4 code points, 13 UTF-8 bytes


def test_last_user_tokens(holds: Holds) -> None:
    assert holds({"last_user_tokens": {"max": 10}}, "a" * 40)  # ~chars/4 for ASCII
    assert not holds({"last_user_tokens": {"max": 10}}, "a" * 41)
    assert holds({"last_user_tokens": {"min": 10}}, "日" * 10)  # ~1 token per CJK character
    assert not holds({"last_user_tokens": {"min": 11}}, "日" * 10)


def test_conversation_chars_sums_every_message(holds: Holds, chat: MakeChat) -> None:
    request = chat("x" * 30, system="s" * 20)  # 50 characters in all
    assert holds({"conversation_chars": {"min": 50, "max": 50}}, request)
    assert not holds({"conversation_chars": {"min": 51}}, request)
    assert not holds({"last_user_chars": {"min": 50}}, request)


def test_conversation_tokens_include_message_overhead(holds: Holds, chat: MakeChat) -> None:
    request = chat("a" * 40, system="b" * 40)  # 10 + 10 tokens + 4 per message
    assert holds({"conversation_tokens": {"min": 28, "max": 28}}, request)
    assert not holds({"conversation_tokens": {"max": 27}}, request)


def test_conversation_tokens_count_images_and_tools(holds: Holds, chat: MakeChat) -> None:
    plain = chat("hi")
    with_image = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, IMAGE]}])
    assert not holds({"conversation_tokens": {"min": 700}}, plain)
    assert holds({"conversation_tokens": {"min": 700}}, with_image)
    assert holds({"conversation_tokens": {"min": 10}}, chat("hi", tools=[TOOL]))
    assert not holds({"conversation_tokens": {"min": 10}}, plain)


def test_message_count(holds: Holds, chat: MakeChat) -> None:
    messages = [{"role": "user", "content": str(i)} for i in range(3)]
    assert holds({"message_count": {"min": 3, "max": 3}}, chat(messages=messages))
    assert not holds({"message_count": {"min": 4}}, chat(messages=messages))
    assert holds({"message_count": {"max": 1}}, chat("one"))


def test_max_tokens_prefers_max_completion_tokens(holds: Holds, chat: MakeChat) -> None:
    when = {"max_tokens": {"min": 1000}}
    assert holds(when, chat("hi", max_tokens=100, max_completion_tokens=5000))
    assert not holds(when, chat("hi", max_tokens=5000, max_completion_tokens=100))
    assert holds(when, chat("hi", max_tokens=1000))


def test_max_tokens_absent_never_satisfies_a_bound(holds: Holds, chat: MakeChat) -> None:
    assert not holds({"max_tokens": {"max": 100}}, chat("hi"))
    assert not holds({"max_tokens": {"min": 0}}, chat("hi"))
    assert holds({"not": {"max_tokens": {"max": 100}}}, chat("hi"))


# --- flags --------------------------------------------------------------------------------------


def test_has_tools_with_tools_or_legacy_functions(holds: Holds, chat: MakeChat) -> None:
    assert holds({"has_tools": True}, chat("hi", tools=[TOOL]))
    assert holds({"has_tools": True}, chat("hi", functions=[TOOL["function"]]))
    assert not holds({"has_tools": True}, chat("hi"))
    assert not holds({"has_tools": True}, chat("hi", tools=[]))
    assert holds({"has_tools": False}, chat("hi"))
    assert not holds({"has_tools": False}, chat("hi", tools=[TOOL]))


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "json_object"}, True),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}, True),
        ({"type": "text"}, False),
        (None, False),
    ],
)
def test_json_response(holds: Holds, chat: MakeChat, response_format: Any, expected: bool) -> None:
    request = chat("hi", response_format=response_format)
    assert holds({"json_response": True}, request) is expected
    assert holds({"json_response": False}, request) is not expected


def test_has_images(holds: Holds, chat: MakeChat) -> None:
    image = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, IMAGE]}])
    text_only = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}]}])
    responses_style = chat(
        messages=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]
    )
    assert holds({"has_images": True}, image)
    assert holds({"has_images": True}, responses_style)
    assert not holds({"has_images": True}, text_only)
    assert holds({"has_images": False}, text_only)


# --- header / metadata / user -------------------------------------------------------------------


def test_header_equals_list_and_case_insensitive_name(holds: Holds) -> None:
    when = {"header": {"name": "X-Task", "equals": ["code-review", "legal"]}}
    assert holds(when, "hi", {"x-task": "legal"})
    assert holds(when, "hi", {"x-task": "code-review"})
    assert not holds(when, "hi", {"x-task": "chat"})
    assert not holds(when, "hi", {})
    assert not holds(when, "hi", {"x-other": "legal"})


def test_header_equals_single_value_and_ignore_case(holds: Holds) -> None:
    sensitive = {"header": {"name": "x-task", "equals": "batch"}}
    insensitive = {"header": {"name": "x-task", "equals": "batch", "ignore_case": True}}
    assert holds(sensitive, "hi", {"x-task": "batch"})
    assert not holds(sensitive, "hi", {"x-task": "Batch"})
    assert holds(insensitive, "hi", {"x-task": "BATCH"})
    assert not holds(insensitive, "hi", {"x-task": "batches"})  # equals is exact, not a substring


def test_header_matches(holds: Holds) -> None:
    when = {"header": {"name": "x-team", "matches": "^team-(a|b)$"}}
    assert holds(when, "hi", {"x-team": "team-a"})
    assert not holds(when, "hi", {"x-team": "team-c"})
    assert not holds(when, "hi", {"x-team": "TEAM-A"})
    assert not holds(when, "hi", {})
    ignore = {"header": {"name": "x-team", "matches": "^team-(a|b)$", "ignore_case": True}}
    assert holds(ignore, "hi", {"x-team": "TEAM-A"})


@pytest.mark.parametrize(
    ("present", "headers", "expected"),
    [
        (True, {"x-debug": ""}, True),
        (True, {}, False),
        (False, {}, True),
        (False, {"x-debug": "1"}, False),
    ],
)
def test_header_present(holds: Holds, present: bool, headers: dict[str, str], expected: bool) -> None:
    assert holds({"header": {"name": "X-Debug", "present": present}}, "hi", headers) is expected


def test_metadata_equals_and_matches(holds: Holds, chat: MakeChat) -> None:
    equals = {"metadata": {"key": "task", "equals": ["batch", "eval"]}}
    matches = {"metadata": {"key": "team", "matches": "^ml-"}}
    assert holds(equals, chat("hi", metadata={"task": "eval"}))
    assert not holds(equals, chat("hi", metadata={"task": "chat"}))
    assert not holds(equals, chat("hi", metadata={"Task": "eval"}))  # keys are exact
    assert not holds(equals, chat("hi"))
    assert holds(matches, chat("hi", metadata={"team": "ml-research"}))
    assert not holds(matches, chat("hi", metadata={"team": "web"}))
    assert holds({"metadata": {"key": "task", "present": False}}, chat("hi"))


def test_user_matches(holds: Holds, chat: MakeChat) -> None:
    when = {"user": {"matches": "^internal-"}}
    assert holds(when, chat("hi", user="internal-42"))
    assert not holds(when, chat("hi", user="customer-42"))
    assert not holds(when, chat("hi"))
    assert holds({"user": {"present": False}}, chat("hi"))
    assert holds({"user": {"equals": ["a", "b"]}}, chat("hi", user="b"))


# --- combinators --------------------------------------------------------------------------------


def test_several_keys_are_an_implicit_all(holds: Holds, chat: MakeChat) -> None:
    when = {"last_user_matches": "sql", "has_tools": True, "message_count": {"max": 1}}
    assert holds(when, chat("write sql", tools=[TOOL]))
    assert not holds(when, chat("write sql"))
    assert not holds(when, chat("write python", tools=[TOOL]))


def test_all_any_not(holds: Holds, chat: MakeChat) -> None:
    all_of = {"all": [{"last_user_matches": "a"}, {"last_user_matches": "b"}]}
    any_of = {"any": [{"last_user_matches": "a"}, {"last_user_matches": "b"}]}
    none_of = {"not": {"any": [{"last_user_matches": "a"}, {"last_user_matches": "b"}]}}
    for text, want_all, want_any in [
        ("ab", True, True),
        ("a", False, True),
        ("b", False, True),
        ("c", False, False),
    ]:
        assert holds(all_of, text) is want_all, text
        assert holds(any_of, text) is want_any, text
        assert holds(none_of, text) is not want_any, text


def test_nested_combinators(holds: Holds, chat: MakeChat) -> None:
    when = {
        "any": [
            {"all": [{"has_tools": True}, {"not": {"last_user_matches": "weather"}}]},
            {"header": {"name": "x-task", "equals": "legal"}, "last_user_chars": {"min": 3}},
        ]
    }
    assert holds(when, chat("book a flight", tools=[TOOL]))
    assert not holds(when, chat("what's the weather", tools=[TOOL]))
    assert holds(when, chat("contract?"), {"x-task": "legal"})
    assert not holds(when, chat("k?"), {"x-task": "legal"})
    assert not holds(when, chat("contract?"))


# --- why ----------------------------------------------------------------------------------------


def _why(make_rules: Callable[..., Rules], when: dict[str, Any], request: Chat, **headers: str) -> str:
    decision = make_rules([{"name": "probe", "tier": "top", "when": when}]).decide(request, headers)
    assert decision.label == "probe"
    return decision.why


def test_why_names_each_condition_that_held(make_rules: Callable[..., Rules], chat: MakeChat) -> None:
    why = _why(make_rules, {"last_user_tokens": {"max": 80}, "message_count": {"max": 6}}, chat("hi"))
    assert why == "last_user_tokens=1 (max 80); message_count=1 (max 6)"
    why = _why(make_rules, {"last_user_matches": {"pattern": "sql", "ignore_case": True}}, chat("SQL"))
    assert why == "last_user_matches /(?i:sql)/"
    why = _why(
        make_rules, {"has_tools": True, "conversation_chars": {"min": 1, "max": 9}}, chat("hi", tools=[TOOL])
    )
    assert why == "conversation_chars=2 (min 1, max 9); has_tools=true"


def test_why_of_any_names_only_the_branch_that_held(make_rules: Callable[..., Rules], chat: MakeChat) -> None:
    when = {
        "any": [
            {"header": {"name": "x-task", "equals": "batch"}},
            {"metadata": {"key": "task", "equals": "batch"}},
        ]
    }
    assert _why(make_rules, when, chat("hi", metadata={"task": "batch"})) == "metadata[task]='batch'"
    assert _why(make_rules, when, chat("hi"), **{"x-task": "batch"}) == "header[x-task]='batch'"


def test_why_of_not_and_present(make_rules: Callable[..., Rules], chat: MakeChat) -> None:
    why = _why(
        make_rules,
        {"not": {"has_tools": True}, "header": {"name": "X-Debug", "present": True}},
        chat("hi"),
        **{"x-debug": "1"},
    )
    assert why == "header[X-Debug] present; not (has_tools: True)"  # cheap leaves first, then not


def test_conversation_tokens_count_tool_call_arguments_and_schemas() -> None:
    """The `conversation_tokens` condition sees what the provider bills: tool-call arguments in
    the history and a json_schema response format (they used to count as nothing)."""
    from tier_router.routing.features import measure
    from tier_router.routing.request import parse_chat

    arguments = '{"q": "' + "x" * 4000 + '"}'
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    plain = [{"role": "user", "content": "hi"}]
    with_calls = [*plain, {"role": "assistant", "content": None, "tool_calls": [call]}]
    base = measure(parse_chat({"model": "auto", "messages": plain}), {}).conversation_tokens
    history = measure(parse_chat({"model": "auto", "messages": with_calls}), {}).conversation_tokens
    assert history - base >= 1000  # ~4,000 characters of arguments
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"description": "y" * 4000}}}
    shaped = measure(parse_chat({"model": "auto", "messages": plain, "response_format": schema}), {})
    assert shaped.conversation_tokens - base >= 1000
