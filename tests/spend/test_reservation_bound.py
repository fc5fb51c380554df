"""The reservation is an upper bound of what an honest provider can bill (spend/budget.py).

The fake provider bills honestly within the documented limits, at its worst:

    prompt tokens     = UTF-8 bytes of every billed input (message text, tool_calls names and
                        arguments, tools / functions and response_format as compact JSON)
                        + 4 per message + 3 (reply priming) + 346 with tools (Anthropic's
                        tool-use prompt) + 1,445 per image (OpenAI's dearest high-detail image)
    completion tokens = n × max_tokens (or max_completion_tokens), else n × the model's
                        max_output, else n × default_max_output_tokens

and for any request hypothesis draws, reservation ≥ that bill's cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tier_router.routing.request import parse_chat
from tier_router.schema import BudgetConfig, Price
from tier_router.spend.budget import BudgetGuard
from tier_router.spend.pricing import cost_micro_usd
from tier_router.spend.reservation import Unbounded, bound
from tier_router.store.memory import MemoryStore

OPENAI_MAX_IMAGE_TOKENS = 1445  # 768×2048 at high detail: 8 tiles × 170 + 85


@dataclass
class Route:
    price: Price
    max_output: int | None


# Any Unicode but lone surrogates (the router refuses those at the door): ASCII, CJK,
# emoji, combining marks, control characters — whatever makes a tokenizer emit most tokens.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300) | st.sampled_from(
    ["", "漢字かな交じり文" * 20, "🤖🧠💸" * 30, "\x00\x01\x7f" * 10, "é" * 100]
)
NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
IMAGE = st.fixed_dictionaries(
    {
        "type": st.just("image_url"),
        "image_url": st.fixed_dictionaries({"url": st.just("https://x.test/i.png")}),
    }
) | st.builds(
    lambda data: {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64," + data, "detail": "high"},
    },
    st.from_regex(r"[A-Za-z0-9+/]{0,400}", fullmatch=True),
)
PART = st.builds(lambda t: {"type": "text", "text": t}, TEXT) | IMAGE
CONTENT = TEXT | st.lists(PART, min_size=1, max_size=4)
TOOL_CALL = st.builds(
    lambda i, name, args: {
        "id": f"call_{i}",
        "type": "function",
        "function": {"name": name, "arguments": args},
    },
    st.integers(0, 10**6),
    NAME,
    TEXT | st.builds(lambda d: json.dumps(d, ensure_ascii=False), st.dictionaries(NAME, TEXT, max_size=5)),
)
MESSAGE = (
    st.builds(lambda c: {"role": "user", "content": c}, CONTENT)
    | st.builds(lambda c: {"role": "system", "content": c}, TEXT)
    | st.builds(
        lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
        st.none() | TEXT,
        st.lists(TOOL_CALL, min_size=1, max_size=4),
    )
    | st.builds(lambda c, i: {"role": "tool", "tool_call_id": f"call_{i}", "content": c}, TEXT, st.integers())
)
SCHEMA = st.recursive(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["string", "integer", "boolean"])}, optional={"description": TEXT}
    ),
    lambda inner: st.fixed_dictionaries(
        {"type": st.just("object"), "properties": st.dictionaries(NAME, inner, max_size=4)}
    ),
    max_leaves=8,
)
TOOL = st.builds(
    lambda name, description, schema: {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    },
    NAME,
    TEXT,
    SCHEMA,
)
LIMIT = st.none() | st.integers(1, 20_000)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": draw(NAME), "messages": draw(st.lists(MESSAGE, min_size=1, max_size=8))}
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(TOOL, min_size=1, max_size=4))
    if draw(st.booleans()):
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": draw(SCHEMA)},
        }
    for field in ("max_tokens", "max_completion_tokens"):
        if (limit := draw(LIMIT)) is not None:
            body[field] = limit
    if (n := draw(st.none() | st.integers(1, 8))) is not None:
        body["n"] = n
    return body


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def compact(value: Any) -> int:
    return utf8(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def honest_bill(body: dict[str, Any], max_output: int | None, default_output: int) -> dict[str, int]:
    """The most an honest provider bills for `body` (see the module docstring)."""
    prompt = 3
    for message in body["messages"]:
        prompt += 4
        content = message.get("content")
        if isinstance(content, str):
            prompt += utf8(content)
        elif isinstance(content, list):
            for part in content:
                prompt += utf8(part["text"]) if part["type"] == "text" else OPENAI_MAX_IMAGE_TOKENS
        for call in message.get("tool_calls") or []:
            prompt += utf8(call["id"]) + utf8(call["function"]["name"]) + utf8(call["function"]["arguments"])
        if "tool_call_id" in message:
            prompt += utf8(message["tool_call_id"])
    if body.get("tools"):
        prompt += compact(body["tools"]) + 346
    if body.get("response_format"):
        prompt += compact(body["response_format"])
    limits = [x for x in (body.get("max_tokens"), body.get("max_completion_tokens")) if x]
    per_choice = max(limits) if limits else (max_output or default_output)
    if limits and max_output:
        per_choice = min(per_choice, max_output)  # the model's own limit, enforced by the provider
    return {"prompt_tokens": prompt, "completion_tokens": per_choice * body.get("n", 1)}


ROUTES = st.builds(
    Route,
    st.builds(
        Price,
        input=st.sampled_from([0.028, 0.1, 1.0, 2.5, 15.0]),
        output=st.sampled_from([0.042, 0.4, 4.0, 10.0, 75.0]),
    ),
    st.none() | st.integers(1, 100_000),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=requests(), route=ROUTES, margin=st.sampled_from([1.0, 1.5]))
def test_the_reservation_covers_any_honest_bill(body: dict[str, Any], route: Route, margin: float) -> None:
    parse_chat(body)  # a valid request, as the router would accept it
    guard = BudgetGuard(MemoryStore(), BudgetConfig(daily_usd=1, reservation_margin=margin))
    reserved = guard.reservation([route], bound(body, guard.config.image_tokens))
    usage = honest_bill(body, route.max_output, guard.config.default_max_output_tokens)
    assert reserved >= cost_micro_usd(route.price, usage), (usage, bound(body, guard.config.image_tokens))


def test_the_bound_is_not_the_routing_estimate() -> None:
    """47 KB of tool-call arguments (the issue's example, estimated at 22 tokens before) count
    byte for byte, and n multiplies the output."""
    args = json.dumps({"rows": ["漢字" * 4 for _ in range(2000)]}, ensure_ascii=False)
    body = {
        "model": "m",
        "n": 8,
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}],
            },
        ],
    }
    b = bound(body, 4000)
    assert b.input_tokens >= utf8(args) > 40_000
    assert (b.n, b.max_tokens) == (8, 100)


@pytest.mark.parametrize("part_type", ["file", "input_file"])
def test_file_parts_cannot_be_bounded(part_type: str) -> None:
    part = {"type": part_type, part_type: {"file_data": "data:application/pdf;base64,JVBER"}}
    with pytest.raises(Unbounded) as info:
        bound({"model": "m", "messages": [{"role": "user", "content": [part]}]}, 4000)
    assert info.value.param == "messages"


@pytest.mark.parametrize("n", [0, 129, "8", True, float("nan")])
def test_an_invalid_n_cannot_be_bounded(n: Any) -> None:
    with pytest.raises(Unbounded) as info:
        bound({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": n}, 4000)
    assert info.value.param == "n"
