"""`prompt_cache_key` end to end: the real openai SDK against live routers, the fake providers
on 127.0.0.1 recording the bodies the router sent, and each request's log line read back.

The fakes live at 127.0.0.1, never api.openai.com: the provider option decides here
(`prompt_cache_key: true` on openai-a; openai-b leaves it unset, so its host decides: off).
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from tier_router.app import RouterApp
from tier_router.routing.conversation import identify

from tests.support.clients import sync_client
from tests.support.fake_providers import Fake, FakeProviders
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread
from tests.support.rules import KEYS, three_providers

ROUTER_KEY = "rk-test"
LONG = "The tool catalogue and the house style guide, repeated. " * 120  # ~1,700 tokens


@dataclass
class Router:
    app: RouterApp
    url: str
    client: openai.OpenAI
    log: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        found = [json.loads(text) for text in self.log.getvalue().splitlines() if text.startswith("{")]
        return [line for line in found if line.get("event") == "request"]


def rules(fakes: FakeProviders, *, a_key: bool | None, **sections: Any) -> dict[str, Any]:
    doc = three_providers(
        fakes.a.url + "/v1",
        fakes.b.url + "/v1",
        fakes.anthropic.url,
        models=("model-a", "model-b", "claude"),
        **sections,
    )
    if a_key is not None:
        doc["providers"]["openai-a"]["prompt_cache_key"] = a_key
    return doc


@pytest.fixture
def routers(fakes: FakeProviders) -> Iterator[dict[str, Router]]:
    """ "keyed": openai-a takes the key (and Anthropic breakpoints are on); "off": openai-a's
    option is false; "unsticky": as keyed, with `conversations: {sticky: false}`."""
    configs = {
        "keyed": rules(fakes, a_key=True, prompt_cache={"auto": True}),
        "off": rules(fakes, a_key=False),
        "unsticky": rules(fakes, a_key=True, conversations={"sticky": False}),
    }
    settings = app_settings(store_url="memory://", api_keys=(ROUTER_KEY,))
    out: dict[str, Router] = {}
    with contextlib.ExitStack() as stack:
        for name, config in configs.items():
            app = build_app(config, settings=settings, keys=KEYS, client=production_client())
            log = io.StringIO()
            app.gateway.access_log._stream = log
            url = stack.enter_context(serve_in_thread(app))
            client = stack.enter_context(sync_client(url, ROUTER_KEY, 15.0))
            out[name] = Router(app, url, client, log)
        yield out


def first_turn(topic: str = "tides") -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You answer in one paragraph."},
        {"role": "user", "content": f"Tell me about {topic}."},
    ]


def later_turn(topic: str = "tides", n: int = 2) -> list[dict[str, Any]]:
    messages = first_turn(topic)
    for i in range(2, n + 1):
        messages += [
            {"role": "assistant", "content": f"Answer {i - 1} about {topic}."},
            {"role": "user", "content": f"And then ({i})?"},
        ]
    return messages


def send(
    fake: Fake, router: Router, messages: list[dict[str, Any]], model: str = "model-a", **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body `fake` received for one request, and the request's log line."""
    fake.reset()
    before = len(router.lines())
    if extra.get("stream"):
        with router.client.chat.completions.create(model=model, messages=messages, **extra) as stream:  # type: ignore[call-overload]
            assert [chunk for chunk in stream]
    else:
        answer = router.client.chat.completions.create(model=model, messages=messages, **extra)  # type: ignore[call-overload]
        assert answer.choices[0].message.content
    deadline = time.monotonic() + 5
    while len(router.lines()) <= before:  # the line is written when the request is settled
        assert time.monotonic() < deadline, "no log line"
        time.sleep(0.02)
    body = fake.last["body"]
    assert isinstance(body, dict)
    return body, router.lines()[-1]


def expected_key(messages: list[dict[str, Any]], line: dict[str, Any]) -> str:
    """`tr-` and the label of the conversation as the router identifies it (scope: the key's name)."""
    return "tr-" + identify({"messages": messages}, {}, line["key"] or "").label


@pytest.mark.parametrize("stream", [False, True])
def test_the_key_comes_from_the_conversation_and_holds_across_its_turns(
    fakes: FakeProviders, routers: dict[str, Router], stream: bool
) -> None:
    extra = {"stream": True} if stream else {}
    keyed = routers["keyed"]
    keys = []
    for turn in (first_turn(), later_turn(n=2), later_turn(n=3)):
        body, line = send(fakes.a, keyed, turn, **extra)
        keys.append(body["prompt_cache_key"])
        assert line["prompt_cache"] == {"marks": 0, "key": True}
        assert body["prompt_cache_key"] == "tr-" + line["conversation"]["conversation"]
    assert keys == [expected_key(first_turn(), line)] * 3
    other, _ = send(fakes.a, keyed, later_turn("volcanoes", n=2), **extra)
    assert other["prompt_cache_key"] != keys[0]
    assert other["prompt_cache_key"].startswith("tr-")


def test_nothing_else_in_the_body_changes(fakes: FakeProviders, routers: dict[str, Router]) -> None:
    extra = {"temperature": 0.5, "max_tokens": 50, "user": "u-1", "metadata": {"team": "x"}}
    keyed, _ = send(fakes.a, routers["keyed"], later_turn(), **extra)
    plain, line = send(fakes.a, routers["off"], later_turn(), **extra)
    assert "prompt_cache_key" not in plain
    assert "prompt_cache" not in line  # nothing was added: no field
    assert keyed.pop("prompt_cache_key").startswith("tr-")
    assert keyed == plain


@pytest.mark.parametrize("stream", [False, True])
def test_the_clients_own_key_is_passed_through_unchanged(
    fakes: FakeProviders, routers: dict[str, Router], stream: bool
) -> None:
    extra: dict[str, Any] = {"stream": True} if stream else {}
    for turn in (first_turn(), later_turn()):
        body, line = send(fakes.a, routers["keyed"], turn, prompt_cache_key="my-app:user-42", **extra)
        assert body["prompt_cache_key"] == "my-app:user-42"
        assert "prompt_cache" not in line
        assert line["conversation"] is not None  # the client's key names the conversation


def test_no_key_where_the_option_is_false_or_unset_off_openai(
    fakes: FakeProviders, routers: dict[str, Router]
) -> None:
    off, line = send(fakes.a, routers["off"], later_turn())
    assert "prompt_cache_key" not in off
    assert line["conversation"] is not None  # a conversation, but a provider that takes no key
    unset, line = send(fakes.b, routers["keyed"], later_turn(), model="model-b")  # 127.0.0.1, unset
    assert "prompt_cache_key" not in unset
    assert "prompt_cache" not in line


@pytest.mark.parametrize("stream", [False, True])
def test_no_conversation_no_key(fakes: FakeProviders, routers: dict[str, Router], stream: bool) -> None:
    extra = {"stream": True} if stream else {}
    body, line = send(fakes.a, routers["unsticky"], later_turn(), **extra)
    assert "prompt_cache_key" not in body
    assert "conversation" not in line
    assert "prompt_cache" not in line


def test_anthropic_gets_no_key_and_its_breakpoints_are_logged(
    fakes: FakeProviders, routers: dict[str, Router]
) -> None:
    long_turn = [
        {"role": "system", "content": LONG},
        {"role": "user", "content": "Summarise the guide."},
        {"role": "assistant", "content": LONG},
        {"role": "user", "content": "Now shorter."},
    ]
    body, line = send(fakes.anthropic, routers["keyed"], long_turn, model="claude")
    assert "prompt_cache_key" not in body
    marks = sum("cache_control" in b for m in body["messages"] for b in m["content"])
    marks += sum("cache_control" in b for b in body["system"])
    assert line["prompt_cache"] == {"marks": marks, "key": False}
    assert marks == 3
    body, line = send(fakes.anthropic, routers["keyed"], long_turn, model="claude", prompt_cache_key="k")
    assert "prompt_cache_key" not in body  # a client's own is dropped by the translation
    short, line = send(fakes.anthropic, routers["keyed"], first_turn(), model="claude")
    assert "prompt_cache_key" not in short
    assert "prompt_cache" not in line


def test_explain_shows_the_setting_and_the_conversation(routers: dict[str, Router]) -> None:
    body = {"model": "claude", "messages": later_turn()}
    headers = {"authorization": f"Bearer {ROUTER_KEY}"}
    with httpx.Client(base_url=routers["keyed"].url, headers=headers, timeout=10) as http:
        keyed = http.post("/v1/route/explain", json=body).json()
    with httpx.Client(base_url=routers["off"].url, headers=headers, timeout=10) as http:
        off = http.post("/v1/route/explain", json=body).json()
    with httpx.Client(base_url=routers["unsticky"].url, headers=headers, timeout=10) as http:
        unsticky = http.post("/v1/route/explain", json=body).json()
    assert keyed["prompt_cache"] == {"min_tokens": 1024}
    assert off["prompt_cache"] is None
    assert keyed["conversation"]["conversation"] == off["conversation"]["conversation"]
    assert len(keyed["conversation"]["conversation"]) == 16
    assert unsticky["conversation"] is None
