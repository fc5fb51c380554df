"""providers.anthropic_cache.mark on bodies made by providers.anthropic.build_request."""

from __future__ import annotations

import copy
import json
from typing import Any

from tier_router.providers.anthropic import build_request
from tier_router.providers.anthropic_cache import MAX_BREAKPOINTS, mark

EPHEMERAL = {"type": "ephemeral"}
LONG = "lorem ipsum dolor sit amet " * 200  # ~1,350 estimated tokens
SHORT = "hello there"


def tool(name: str, description: str = "does a thing") -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"type": "object"}},
    }


def built(**body: Any) -> dict[str, Any]:
    return build_request({"model": "auto", **body}, "claude-x")


def markers(body: dict[str, Any]) -> list[str]:
    """Where the markers are: 'tools[i]', 'system[i]', 'messages[i][j]'."""
    found = [f"tools[{i}]" for i, t in enumerate(body.get("tools", [])) if "cache_control" in t]
    system = body.get("system")
    if isinstance(system, list):
        found += [f"system[{i}]" for i, b in enumerate(system) if "cache_control" in b]
    for i, m in enumerate(body["messages"]):
        found += [f"messages[{i}][{j}]" for j, b in enumerate(m["content"]) if "cache_control" in b]
    return found


def stripped(body: dict[str, Any]) -> str:
    """Canonical JSON with markers removed (a lone plain system block read as its string)."""
    body = copy.deepcopy(body)
    for block in [*body.get("tools", []), *[b for m in body["messages"] for b in m["content"]]]:
        block.pop("cache_control", None)
    system = body.get("system")
    if isinstance(system, list):
        for block in system:
            block.pop("cache_control", None)
        if len(system) == 1:
            body["system"] = system[0]["text"]
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def history(turns: int, text: str = SHORT) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(turns):
        out.append({"role": "user", "content": f"{text} q{i}"})
        out.append({"role": "assistant", "content": f"{text} a{i}"})
    return [*out, {"role": "user", "content": "and now?"}]


def test_below_the_threshold_nothing_is_marked() -> None:
    body = built(messages=[{"role": "system", "content": SHORT}, *history(3)], tools=[tool("f")])
    before = canonical(body)
    assert mark(body, 1024) == 0
    assert canonical(body) == before


def test_system_only_marks_the_last_system_block() -> None:
    body = built(messages=[{"role": "system", "content": LONG}, {"role": "user", "content": "hi"}])
    plain = canonical(body)
    assert mark(body, 1024) == 1
    assert markers(body) == ["system[0]"]
    assert body["system"][0]["cache_control"] == EPHEMERAL
    assert stripped(body) == plain


def test_tools_only_marks_the_last_tool() -> None:
    tools = [tool("a"), tool("b", LONG), tool("c")]
    body = built(messages=[{"role": "user", "content": "hi"}], tools=tools)
    plain = canonical(body)
    assert mark(body, 1024) == 1
    assert markers(body) == ["tools[2]"]
    assert stripped(body) == plain


def test_tools_below_but_tools_and_system_above_marks_the_system_only() -> None:
    half = "word " * 1000  # ~1,250 tokens: tools alone below 2,000, tools + system above
    body = built(
        messages=[{"role": "system", "content": half}, {"role": "user", "content": "hi"}],
        tools=[tool("a", half)],
    )
    assert mark(body, 2000) == 1
    assert markers(body) == ["system[0]"]


def test_long_history_marks_the_last_earlier_turn_then_the_longest() -> None:
    messages = [
        {"role": "system", "content": LONG},
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": LONG},  # the longest earlier turn
        {"role": "user", "content": "short again"},
        {"role": "assistant", "content": "ok " * 300},
        {"role": "user", "content": "final question"},
    ]
    body = built(messages=messages, tools=[tool("a")])
    plain = canonical(body)
    added = mark(body, 1024)
    # tools (~30 tokens) stay below; system, the last earlier turn (3), the longest (1), then 2
    assert markers(body) == ["system[0]", "messages[1][0]", "messages[2][0]", "messages[3][0]"]
    assert added == 4
    assert "cache_control" not in body["messages"][-1]["content"][-1]  # the new turn never
    assert stripped(body) == plain


def test_never_more_than_four_breakpoints() -> None:
    messages = [{"role": "system", "content": LONG}, *history(6, LONG)]
    body = built(messages=messages, tools=[tool("a", LONG)])
    plain = canonical(body)
    assert mark(body, 1024) == MAX_BREAKPOINTS
    assert len(markers(body)) == MAX_BREAKPOINTS
    # the last earlier turn (11), then the longest other (all equal: the latest, 10)
    assert markers(body) == ["tools[0]", "system[0]", "messages[10][0]", "messages[11][0]"]
    assert stripped(body) == plain


def test_client_markers_are_kept_and_count_against_the_limit() -> None:
    cached_text = {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    messages = [
        {"role": "system", "content": [cached_text]},
        {"role": "user", "content": [dict(cached_text)]},
        {"role": "assistant", "content": LONG},
        {"role": "user", "content": [dict(cached_text)]},
        {"role": "assistant", "content": LONG},
        {"role": "user", "content": "question"},
    ]
    body = built(messages=messages, tools=[tool("a", LONG)])
    client = markers(body)
    assert len(client) == 3
    assert mark(body, 1024) == 1
    assert len(markers(body)) == MAX_BREAKPOINTS
    assert set(client) <= set(markers(body))
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}  # unchanged


def test_four_client_markers_leave_the_body_alone() -> None:
    part = {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}
    messages = [{"role": "system", "content": [part, dict(part)]}, {"role": "user", "content": [part, part]}]
    tail = [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
    body = built(messages=[*messages, *tail])
    before = canonical(body)
    assert mark(body, 0) == 0
    assert canonical(body) == before


def test_a_streamed_request_is_marked_the_same() -> None:
    messages = [{"role": "system", "content": LONG}, *history(2, LONG)]
    plain, streamed = built(messages=messages), built(messages=messages, stream=True)
    mark(plain, 1024)
    mark(streamed, 1024)
    assert streamed.pop("stream") is True
    assert canonical(streamed) == canonical(plain)


def test_non_ascii_text_is_estimated_by_bytes() -> None:
    cjk = "漢" * 1100  # ~1,100 tokens by bytes/3, ~280 by chars/4
    body = built(messages=[{"role": "system", "content": cjk}, {"role": "user", "content": "hi"}])
    assert mark(body, 1024) == 1
