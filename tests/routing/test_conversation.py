"""Conversation identity (routing/conversation.py): the same id on every turn of one
conversation, different ids for different prefixes, explicit ids first and in order, a canonical
prefix, OpenAI-style 400s for bad ids, bounded work, and no raw text in what it shows."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from tier_router.errors import APIError
from tier_router.routing import conversation
from tier_router.routing.conversation import HASHED_CHARS, MAX_ID_CHARS, Conversation, identify

SYSTEM = "You are a careful assistant for ACME's billing team."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_invoice",
            "description": "Find an invoice",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
    }
]


def turn(n: int, *, system: str = SYSTEM, first: str = "Where is invoice 42?", **extra: Any) -> dict:
    """The body of turn `n` (1-based) of one conversation: the history grows, the prefix stays."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": first},
    ]
    for k in range(1, n):
        call = {"id": f"c{k}", "type": "function", "function": {"name": "lookup_invoice", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{k}", "content": f"result {k}"})
        messages.append({"role": "assistant", "content": f"answer {k}"})
        messages.append({"role": "user", "content": f"follow-up {k}"})
    return {"model": "auto", "messages": messages, "tools": copy.deepcopy(TOOLS), **extra}


def prefix(body: dict, headers: dict | None = None, scope: str = "") -> Conversation:
    got = identify(body, headers or {}, scope)
    assert got.source == "prefix"
    return got


# -- the same conversation, turn after turn


def test_single_turn_and_fifth_turn_share_the_id() -> None:
    first = prefix(turn(1))
    assert [prefix(turn(n)) for n in range(2, 6)] == [first] * 4
    assert len(first.digest) == 16


def test_a_later_system_message_does_not_move_the_conversation() -> None:
    body = turn(3)
    body["messages"].append({"role": "system", "content": "Reminder: be brief."})
    assert prefix(body) == prefix(turn(1))


# -- different conversations


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b["messages"][0].update(content=SYSTEM + "!"),
        lambda b: b["messages"][1].update(content="Where is invoice 43?"),
        lambda b: b["messages"][1].update(content="Where is invoice  42?"),  # whitespace in text is content
        lambda b: b["tools"][0]["function"].update(description="Find a bill"),
        lambda b: b.pop("tools"),
        lambda b: b["messages"].pop(0),
        lambda b: b["messages"][0].update(role="user"),
        lambda b: b["messages"][1].update(name="alice"),
        lambda b: b.update(user="user-2"),
    ],
    ids=["system", "first-user", "whitespace", "tool", "no-tools", "no-system", "role", "name", "user"],
)
def test_a_different_prefix_is_a_different_conversation(change: Any) -> None:
    body = turn(2)
    change(body)
    assert prefix(body) != prefix(turn(2))


def test_scope_separates_tenants() -> None:
    assert prefix(turn(1), scope="tenant-a") != prefix(turn(1), scope="tenant-b")
    header = {"x-conversation-id": "c-1"}
    assert identify(turn(1), header, "tenant-a") != identify(turn(1), header, "tenant-b")


def test_image_parts_count_by_their_data() -> None:
    def with_image(data: str) -> dict:
        body = turn(1)
        url = {"url": f"data:image/png;base64,{data}", "detail": "low"}
        body["messages"][1]["content"] = [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": url},
        ]
        return body

    assert prefix(with_image("AAAA")) == prefix(with_image("AAAA"))
    assert prefix(with_image("AAAA")) != prefix(with_image("AAAB"))


# -- canonical form


def test_key_order_and_json_whitespace_do_not_change_the_id() -> None:
    body = turn(3)
    reordered = json.loads(json.dumps(body, sort_keys=True, indent=4))
    reordered["tools"][0]["function"] = dict(reversed(list(reordered["tools"][0]["function"].items())))
    reordered["messages"][0] = dict(reversed(list(reordered["messages"][0].items())))
    assert list(reordered["tools"][0]["function"]) != list(body["tools"][0]["function"])
    assert prefix(reordered) == prefix(body)


def test_string_content_equals_one_text_part() -> None:
    body = turn(1)
    body["messages"][0]["content"] = [{"type": "text", "text": SYSTEM}]
    assert prefix(body) == prefix(turn(1))


def test_concatenation_is_not_ambiguous() -> None:
    split_a = turn(1)
    split_a["messages"][0]["content"] = [{"type": "text", "text": "ab"}, {"type": "text", "text": "c"}]
    split_b = turn(1)
    split_b["messages"][0]["content"] = [{"type": "text", "text": "a"}, {"type": "text", "text": "bc"}]
    assert prefix(split_a) != prefix(split_b)
    # a string value that spells a number is not the number
    one = turn(1, metadata={})
    one["tools"][0]["function"]["parameters"]["minimum"] = 1
    other = turn(1)
    other["tools"][0]["function"]["parameters"]["minimum"] = "1"
    assert prefix(one) != prefix(other)


def test_functions_name_the_conversation_when_there_are_no_tools() -> None:
    a, b = turn(1), turn(1)
    for body, name in ((a, "f"), (b, "g")):
        body.pop("tools")
        body["functions"] = [{"name": name, "parameters": {"type": "object"}}]
    assert prefix(a) != prefix(b)


# -- explicit ids and their order


def test_explicit_id_wins_over_the_prefix() -> None:
    one = identify(turn(1), {"x-conversation-id": "conv-7"})
    other = identify(turn(4, system="Another prompt"), {"x-conversation-id": "conv-7"})
    assert one == other
    assert one.source == "header"
    assert one.explicit
    assert identify(turn(1), {"x-conversation-id": "conv-8"}) != one


@pytest.mark.parametrize(
    ("headers", "extra", "source"),
    [
        (
            {"x-conversation-id": "h"},
            {"metadata": {"conversation_id": "m"}, "prompt_cache_key": "k"},
            "header",
        ),
        ({}, {"metadata": {"conversation_id": "m"}, "prompt_cache_key": "k"}, "metadata"),
        ({}, {"prompt_cache_key": "k"}, "prompt_cache_key"),
        (
            {"x-conversation-id": ""},
            {"metadata": {"conversation_id": ""}, "prompt_cache_key": "k"},
            "prompt_cache_key",
        ),
        ({}, {"metadata": {"team": "x"}, "prompt_cache_key": ""}, "prefix"),
    ],
    ids=["header-first", "metadata-next", "cache-key-last", "empty-is-absent", "none"],
)
def test_order_of_precedence(headers: dict, extra: dict, source: str) -> None:
    got = identify(turn(1, **extra), headers)
    assert got.source == source
    if source != "prefix":
        alone = {
            "header": ({"x-conversation-id": "h"}, {}),
            "metadata": ({}, {"metadata": {"conversation_id": "m"}}),
        }
        h, e = alone.get(source, ({}, {"prompt_cache_key": "k"}))
        assert identify(turn(3, system="other", **e), h) == got  # the value chosen, not the others


def test_same_value_from_different_sources_is_not_the_same_conversation() -> None:
    by_header = identify(turn(1), {"x-conversation-id": "same"})
    by_key = identify(turn(1, prompt_cache_key="same"), {})
    assert by_header != by_key


# -- bad input


@pytest.mark.parametrize(
    ("headers", "extra", "param", "expected"),
    [
        ({"x-conversation-id": 7}, {}, "x-conversation-id", "but got an integer"),
        ({}, {"metadata": {"conversation_id": 7}}, "metadata.conversation_id", "but got an integer"),
        ({}, {"metadata": {"conversation_id": ["a"]}}, "metadata.conversation_id", "but got an array"),
        ({}, {"prompt_cache_key": {"a": 1}}, "prompt_cache_key", "but got an object"),
        ({}, {"prompt_cache_key": True}, "prompt_cache_key", "but got a boolean"),
    ],
)
def test_a_non_string_id_is_an_openai_400(headers: dict, extra: dict, param: str, expected: str) -> None:
    with pytest.raises(APIError) as caught:
        identify(turn(1, **extra), headers)
    error = caught.value
    assert (error.status, error.type, error.code, error.param) == (
        400,
        "invalid_request_error",
        "invalid_type",
        param,
    )
    assert error.message == f"Invalid type for '{param}': expected a string, {expected} instead."


def test_a_too_long_id_is_refused_without_echoing_it() -> None:
    secret = "s3cr3t-" * 100
    assert len(secret) > MAX_ID_CHARS
    with pytest.raises(APIError) as caught:
        identify(turn(1), {"x-conversation-id": secret})
    error = caught.value
    assert (error.status, error.code, error.param) == (400, "string_above_max_length", "x-conversation-id")
    assert "s3cr3t" not in error.message
    assert identify(turn(1), {"x-conversation-id": "x" * MAX_ID_CHARS}).source == "header"


def test_odd_bodies_still_get_a_prefix_id() -> None:
    for body in (
        {},
        {"messages": None},
        {"messages": ["not a message", 3]},
        {"messages": [], "metadata": "x"},
    ):
        assert prefix(body) == prefix({})


# -- bounded work, and nothing raw shown


def test_long_strings_are_hashed_up_to_the_cap_once(monkeypatch: pytest.MonkeyPatch) -> None:
    huge = "x" * (1 << 20)
    fed: list[int] = []
    real = conversation._feed_str

    def counting(h: Any, text: str) -> None:
        fed.append(len(text))
        real(h, text)

    monkeypatch.setattr(conversation, "_feed_str", counting)
    got = prefix(turn(5, system=huge))
    assert fed.count(len(huge)) == 1  # hashed once, not once per turn or per purpose
    monkeypatch.setattr(conversation, "_feed_str", real)
    # Past the cap only the length counts: same head and length, same id; another length, another.
    assert prefix(turn(1, system=huge[:-1] + "y")) == got
    assert prefix(turn(1, system=huge + "x")) != got
    assert prefix(turn(1, system="y" + huge[1:])) != got
    assert len(huge) > HASHED_CHARS


def test_repr_and_label_hold_no_raw_text() -> None:
    raw = "conv-SECRET-1234"
    for got in (identify(turn(1), {"x-conversation-id": raw}), prefix(turn(1, first="my SECRET question"))):
        shown = repr(got) + got.label + str(got.source)
        assert "SECRET" not in shown
        assert "1234" not in shown
        assert len(got.label) == 16
        assert got.label == got.digest[:8].hex()
        assert raw.encode() not in got.digest


@pytest.mark.parametrize(
    "extra",
    [{"metadata": {"conversation_id": 7}}, {"prompt_cache_key": 7}, {"prompt_cache_key": ["k"]}],
    ids=["metadata", "prompt-cache-key", "prompt-cache-key-array"],
)
def test_errors_match_the_parameter_check(extra: dict) -> None:
    """The same body refused by `params.check` and by `identify` gets the same 400."""
    from tier_router.params import check

    body = turn(1, **extra)
    with pytest.raises(APIError) as by_params:
        check(body)
    with pytest.raises(APIError) as by_identify:
        identify(body, {})
    ours, theirs = by_identify.value, by_params.value
    assert (ours.status, ours.message, ours.code, ours.param) == (
        theirs.status,
        theirs.message,
        theirs.code,
        theirs.param,
    )


def test_a_body_that_passes_the_parameter_check_is_identified() -> None:
    from tier_router.params import check

    body = turn(2, metadata={"conversation_id": "m" * MAX_ID_CHARS}, prompt_cache_key="k")
    check(body)
    assert identify(body, {}).source == "metadata"
