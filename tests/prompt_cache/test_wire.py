"""Automatic Anthropic cache breakpoints end to end: the real openai SDK against the router,
the fake Anthropic provider on 127.0.0.1 recording the payload the router sent."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.clients import sync_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread
from tests.support.rules import KEYS, three_providers

ROUTER_KEY = "rk-test"
LONG = "The tool catalogue and the house style guide, repeated. " * 120  # ~1,700 tokens
EPHEMERAL = {"type": "ephemeral"}


def rules(fakes: FakeProviders, **sections: Any) -> dict[str, Any]:
    doc = three_providers(
        fakes.a.url + "/v1",
        fakes.b.url + "/v1",
        fakes.anthropic.url,
        models=("model-a", "model-b", "claude"),
        **sections,
    )
    # the rule routes every turn (a sticky conversation would stay where its first turn went)
    doc["rules"][0]["sticky"] = False
    return doc


@pytest.fixture
def routers(fakes: FakeProviders) -> Iterator[dict[str, openai.OpenAI]]:
    """Three routers on the same fakes: "on" (auto), "off" (no prompt_cache section) and
    "scoped" (on at the top level, off for the rule `needs-thinking`, 4000 for `smart`)."""
    scoped = {
        "auto": True,
        "tiers": {"smart": {"min_tokens": 4000}},
        "rules": {"needs-thinking": {"auto": False}},
    }
    configs = {
        "on": rules(fakes, prompt_cache={"auto": True, "min_tokens": 1024}),
        "off": rules(fakes),
        "scoped": rules(fakes, prompt_cache=scoped),
    }
    settings = app_settings(store_url="memory://", api_keys=(ROUTER_KEY,))
    clients: dict[str, openai.OpenAI] = {}
    with contextlib.ExitStack() as stack:
        for name, config in configs.items():
            app = build_app(config, settings=settings, keys=KEYS, client=production_client())
            url = stack.enter_context(serve_in_thread(app))
            clients[name] = stack.enter_context(sync_client(url, ROUTER_KEY, 15.0))
        yield clients


def conversation(system: str = LONG, earlier: str = LONG) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "Summarise the guide."},
        {"role": "assistant", "content": earlier},
        {"role": "user", "content": "Now shorter."},
    ]


def sent(
    fakes: FakeProviders, client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """The Anthropic body the router sent for one request (streamed when `stream=True`)."""
    fakes.anthropic.reset()
    model = extra.pop("model", "claude-only")
    if extra.get("stream"):
        with client.chat.completions.create(model=model, messages=messages, **extra) as stream:  # type: ignore[call-overload]
            assert [chunk for chunk in stream]
    else:
        answer = client.chat.completions.create(model=model, messages=messages, **extra)  # type: ignore[call-overload]
        assert answer.choices[0].message.content
    body = fakes.anthropic.last["body"]
    assert isinstance(body, dict)
    return body


def markers(body: dict[str, Any]) -> list[str]:
    found = [f"tools[{i}]" for i, t in enumerate(body.get("tools", [])) if "cache_control" in t]
    if isinstance(body.get("system"), list):
        found += [f"system[{i}]" for i, b in enumerate(body["system"]) if "cache_control" in b]
    for i, m in enumerate(body["messages"]):
        found += [f"messages[{i}][{j}]" for j, b in enumerate(m["content"]) if "cache_control" in b]
    return found


def unmarked(body: dict[str, Any]) -> str:
    """Canonical JSON without the markers (a lone plain system block read as its string)."""
    body = copy.deepcopy(body)
    for block in [*body.get("tools", []), *(b for m in body["messages"] for b in m["content"])]:
        block.pop("cache_control", None)
    if isinstance(body.get("system"), list):
        for block in body["system"]:
            block.pop("cache_control", None)
        if len(body["system"]) == 1:
            body["system"] = body["system"][0]["text"]
    return canonical(body)


def canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


@pytest.mark.parametrize("stream", [False, True])
def test_above_the_threshold_the_prefix_is_marked_and_nothing_else_changes(
    fakes: FakeProviders, routers: dict[str, openai.OpenAI], stream: bool
) -> None:
    extra = {"stream": True} if stream else {}
    on = sent(fakes, routers["on"], conversation(), **extra)
    off = sent(fakes, routers["off"], conversation(), **extra)
    assert markers(off) == []
    assert markers(on) == ["system[0]", "messages[0][0]", "messages[1][0]"]
    assert on["system"][0]["cache_control"] == EPHEMERAL
    assert unmarked(on) == canonical(off)


def test_below_the_threshold_the_payload_is_the_one_without_the_feature(
    fakes: FakeProviders, routers: dict[str, openai.OpenAI]
) -> None:
    short = conversation(system="Be brief.", earlier="A guide.")
    assert canonical(sent(fakes, routers["on"], short)) == canonical(sent(fakes, routers["off"], short))


def test_tools_are_marked_and_client_markers_count_against_four(
    fakes: FakeProviders, routers: dict[str, openai.OpenAI]
) -> None:
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup", "description": LONG, "parameters": {"type": "object"}},
        }
    ]
    mine = {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    messages = [
        {"role": "system", "content": [mine]},
        {"role": "user", "content": [dict(mine)]},
        {"role": "assistant", "content": [dict(mine)]},
        {"role": "user", "content": "and?"},
    ]
    on = sent(fakes, routers["on"], messages, tools=tools)
    off = sent(fakes, routers["off"], messages, tools=tools)
    assert markers(off) == ["system[0]", "messages[0][0]", "messages[1][0]"]  # the client's three
    assert markers(on) == ["tools[0]", "system[0]", "messages[0][0]", "messages[1][0]"]
    assert on["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert unmarked(on) == unmarked(off)


def test_tier_and_rule_overrides(fakes: FakeProviders, routers: dict[str, openai.OpenAI]) -> None:
    # claude-only takes the top level (on, 1024)
    assert markers(sent(fakes, routers["scoped"], conversation())) != []
    # tier smart needs 4000 tokens: a named-tier request of ~3,400 marks only what is above it
    assert markers(sent(fakes, routers["scoped"], conversation(), model="smart")) == []
    # the rule needs-thinking (tier smart, via model auto) turns it off whatever the size
    proving = [*conversation(system=LONG * 3)[:-1], {"role": "user", "content": "Prove it."}]
    assert markers(sent(fakes, routers["scoped"], proving, model="auto")) == []
    assert markers(sent(fakes, routers["on"], proving, model="auto")) != []
