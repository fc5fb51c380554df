"""`parse_chat` (direct checks on the hot path) against `ChatRequest` (the pydantic model).

The promise in `parse_chat`'s docstring is that both accept and reject exactly the same
bodies and that routing sees the same request either way; the property tests below draw
bodies that mix valid values, near misses (wrong types, coercible strings, lone surrogates,
empty lists) and unknown fields, and hold the fast path to that promise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tier_router.errors import APIError
from tier_router.params import check as check_params
from tier_router.routing.features import measure
from tier_router.routing.request import _plainly_valid, encodable, parse_chat
from tier_router.routing.request_model import ChatRequest

LONE_SURROGATE = json.loads('"a\\ud800"')
MISSING = object()

texts = st.sampled_from(["hi", "", "héllo 日本", LONE_SURROGATE]) | st.text(max_size=8)
odd = st.sampled_from([None, 0, 1, -1, True, 1.5, "5", "true", [], {}, ["x"], [{}], LONE_SURROGATE])
parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio"]) | odd},
    optional={"text": texts | odd, "image_url": st.just({"url": "https://example.com/a.png"})},
)
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]) | odd},
    optional={"content": texts | st.lists(parts | odd, max_size=3) | odd, "name": texts},
)
fields: dict[str, Any] = {
    "stream": st.booleans() | odd,
    "stream_options": st.just({"include_usage": True}) | odd,
    "modalities": st.lists(st.sampled_from(["text", "audio"]) | odd, max_size=2) | odd,
    "tools": st.lists(st.just({"type": "function", "function": {"name": "f"}}) | odd, max_size=2) | odd,
    "functions": st.lists(st.just({"name": "f"}) | odd, max_size=2) | odd,
    "response_format": st.just({"type": "json_object"}) | odd,
    "max_tokens": st.integers(-2, 10**6) | odd,
    "max_completion_tokens": st.integers(-2, 10**6) | odd,
    "metadata": st.dictionaries(st.sampled_from(["team", "tier"]), texts | odd, max_size=2) | odd,
    "user": texts | odd,
    "temperature": st.floats(0, 2),
    "x_unknown_field": odd,
}
bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["auto", "premium", ""]) | odd,
        "messages": st.lists(messages | odd, max_size=3) | odd,
    },
    optional=fields,
)


def verdict(parse: Any, body: dict[str, Any]) -> tuple[bool, Any]:
    try:
        return True, parse(body)
    except ValidationError as exc:
        return False, exc.errors(include_url=False, include_input=False)[0]["loc"]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_fast_path_accepts_and_rejects_what_the_model_does(body: dict[str, Any]) -> None:
    accepted, fast = verdict(parse_chat, body)
    model_accepted, model = verdict(ChatRequest.model_validate, body)
    assert accepted == model_accepted
    if accepted:
        # Routing sees the same request either way: the features are identical.
        canonical = parse_chat(model.model_dump())
        assert measure(fast, {}) == measure(canonical, {})
        assert (fast.model, fast.max_tokens, fast.max_completion_tokens, fast.user, fast.metadata) == (
            canonical.model,
            canonical.max_tokens,
            canonical.max_completion_tokens,
            canonical.user,
            canonical.metadata,
        )
    else:
        assert fast == model  # the same first error location, from the model itself


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_the_shortcut_never_accepts_what_the_model_rejects(body: dict[str, Any]) -> None:
    if encodable(body) and _plainly_valid(body):
        ChatRequest.model_validate(body)  # raises if the shortcut was too lenient


def test_an_ordinary_request_takes_the_shortcut() -> None:
    """Guards the point of the exercise: a normal SDK body must not fall back to the model."""
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "max_tokens": 5,
        "stream": True,
        "metadata": {"team": "search"},
        "user": "u1",
    }
    assert _plainly_valid(body)
    chat = parse_chat(body, text_checked=True)
    assert chat.messages is body["messages"]  # the client's dicts, not copies
    assert measure(chat, {}).image_count == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"model": "auto", "messages": []}, ("messages",)),
        ({"model": "", "messages": [{"role": "user"}]}, ("model",)),
        ({"model": "auto", "messages": [{"role": "robot", "content": "x"}]}, ("messages", 0, "role")),
        ({"model": "auto", "messages": [{"role": ["user"], "content": "x"}]}, ("messages", 0, "role")),
        ({"model": "auto", "messages": [{"role": "user"}], "max_tokens": 0}, ("max_tokens",)),
        ({"model": "auto", "messages": [{"role": "user", "content": LONE_SURROGATE}]}, ("messages", 0)),
    ],
)
def test_rejections_name_the_field(body: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_chat(body)
    assert caught.value.errors()[0]["loc"][: len(loc)] == loc


@settings(max_examples=300, deadline=None)
@given(bodies)
def test_text_checked_bodies_take_the_same_path(body: dict[str, Any]) -> None:
    """What the proxy does: bodies it has checked for lone surrogates skip that check here."""
    if encodable(body):
        assert verdict(parse_chat, body)[0] == verdict(lambda b: parse_chat(b, text_checked=True), body)[0]


def test_coercible_values_are_accepted_as_the_model_coerces_them() -> None:
    chat = parse_chat({"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": "7"})
    assert chat.max_tokens == 7


def test_the_model_is_imported_only_when_a_body_needs_it() -> None:
    """Building the pydantic model costs Lambda cold-start time: plain bodies must not need it."""
    code = (
        "import sys\n"
        "from tier_router.routing.request import parse_chat\n"
        "parse_chat({'model': 'auto', 'messages': [{'role': 'user', 'content': 'hi'}]})\n"
        "print('tier_router.routing.request_model' in sys.modules)\n"
        "parse_chat({'model': 'auto', 'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': '5'})\n"
        "print('tier_router.routing.request_model' in sys.modules)\n"
    )
    handler = Path(__file__).resolve().parents[2] / "handler"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(handler)},
    ).stdout.split()
    assert out == ["False", "True"]


# Near misses: a plain body with one top-level field (any value above) and 1-3 messages.
one_field = st.sampled_from(sorted(fields)).flatmap(lambda name: st.tuples(st.just(name), fields[name]))
near_bodies = st.builds(
    lambda msgs, field: {"model": "auto", "messages": msgs, field[0]: field[1]},
    st.lists(messages, min_size=1, max_size=3),
    one_field,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies | near_bodies)
def test_the_param_check_implies_the_direct_checks(body: dict[str, Any]) -> None:
    """The proxy runs `tier_router.params.check` first and then skips the direct checks
    (`params_checked=True`): whatever that check lets through must pass them."""
    try:
        check_params(body)
    except APIError:
        return
    assert _plainly_valid(body), body
    if encodable(body):
        assert parse_chat(body, params_checked=True) == parse_chat(body)
