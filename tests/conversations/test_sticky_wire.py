"""Sticky conversations end to end: the real openai SDK against a live router on the default
configuration (SQLite store, request log on), the fake providers on 127.0.0.1 answering.

The rules: tier `fast` = [model-a ($1/$4), model-b ($0.2/$0.8)], tier `smart` = [claude ($3/$15),
model-b]; the rule `long-chat` sends a conversation of 150+ estimated tokens to `smart`, so a
conversation that grows crosses a rule boundary on its third turn."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from tier_router.routing.conversation import identify
from tier_router.routing.stickiness import Memory

from tests.support.clients import sync_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_app import app_settings, asgi_client, build_app, production_client, serve_in_thread
from tests.support.rules import KEYS, three_providers

ROUTER_KEY = "rk-conv"
LONG_CHAT = {"name": "long-chat", "tier": "smart", "when": {"conversation_tokens": {"min": 150}}}
SYSTEM = "You are a patient tutor."


def rules(
    fakes: FakeProviders, *, long_chat: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Any]:
    doc = three_providers(
        fakes.a.url + "/v1",
        fakes.b.url + "/v1",
        fakes.anthropic.url,
        models=("model-a", "model-b", "claude"),
        **sections,
    )
    doc["rules"] = [long_chat or LONG_CHAT]
    return doc


@contextlib.contextmanager
def live_router(doc: dict[str, Any], tmp_path: Path) -> Iterator[openai.OpenAI]:
    settings = app_settings(store_url=f"sqlite:///{tmp_path / 'state.db'}", api_keys=(ROUTER_KEY,))
    app = build_app(doc, settings=settings, keys=KEYS, client=production_client())
    with serve_in_thread(app) as url, sync_client(url, ROUTER_KEY, 15.0) as client:
        yield client


class Chat:
    """One conversation, turn by turn: each turn sends the whole history, like a chat app."""

    def __init__(self, client: openai.OpenAI, opening: str, system: str = SYSTEM) -> None:
        self.client = client
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        self.opening = opening

    def turn(self, text: str | None = None, **extra: Any) -> dict[str, str]:
        """Send the next user message; returns the router's x-router-* headers."""
        self.messages.append({"role": "user", "content": text or self.opening})
        raw = self.client.chat.completions.with_raw_response.create(
            model=extra.pop("model", "auto"), messages=self.messages, **extra
        )
        answer = raw.parse()
        self.messages.append({"role": "assistant", "content": answer.choices[0].message.content})
        return {k: v for k, v in raw.headers.items() if k.startswith("x-router-")}


def log_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


FOLLOW_UPS = [
    "Tell me more about that, with an example or two please.",
    "Why does that work? Explain the reasoning step by step in some detail for me.",
    "And what would change if the numbers were much larger than in your example above?",
    "Summarise everything we discussed so far in a short paragraph, please.",
]


def test_a_five_turn_conversation_keeps_its_model_across_a_rule_boundary(
    fakes: FakeProviders, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_router(rules(fakes), tmp_path) as client:
        chat = Chat(client, "What is a prime number?")
        seen = [chat.turn()] + [chat.turn(text) for text in FOLLOW_UPS]
    assert [h["x-router-model"] for h in seen] == ["model-a"] * 5
    assert fakes.anthropic.requests == 0
    lines = log_lines(capsys.readouterr().out)
    assert len(lines) == 5
    convs = [line["conversation"] for line in lines]
    assert len({c["conversation"] for c in convs}) == 1  # one conversation, one label
    assert next(c["stick"] for c in convs) == "new"
    assert all(c["stick"] == "kept" and c["remembered"] == "model-a" for c in convs[1:]), convs
    # The rule boundary was crossed: the rules alone would have sent later turns to `smart`;
    # staying was priced and was cheaper.
    crossed = [c for c in convs if "estimate" in c]
    assert crossed, "the long-chat rule never matched: the test does not cross a rule boundary"
    assert all(c["estimate"]["stay_micro_usd"] <= c["estimate"]["move_micro_usd"] for c in crossed)
    assert all(line["rule"] == "long-chat" for line in lines if "estimate" in line["conversation"])


def test_sticky_false_re_decides_every_turn(fakes: FakeProviders, tmp_path: Path) -> None:
    with live_router(rules(fakes, long_chat={**LONG_CHAT, "sticky": False}), tmp_path) as client:
        chat = Chat(client, "What is a prime number?")
        seen = [chat.turn()] + [chat.turn(text) for text in FOLLOW_UPS]
    models = [h["x-router-model"] for h in seen]
    assert models[0] == "model-a"
    assert "claude" in models  # the rule's tier once the conversation is long
    assert models == sorted(models, key=lambda m: m != "model-a")  # a, ..., then claude onwards


def test_a_failover_moves_the_conversation_and_the_next_turn_stays(
    fakes: FakeProviders, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_router(rules(fakes), tmp_path) as client:
        chat = Chat(client, "Hi")
        assert chat.turn()["x-router-model"] == "model-a"
        fakes.a.control(mode="status", status=503)
        assert chat.turn("And then?")["x-router-model"] == "model-b"  # failed over
        fakes.a.reset()  # model-a is healthy again
        before = fakes.a.requests
        assert chat.turn("Go on.")["x-router-model"] == "model-b"  # the conversation stays moved
        assert fakes.a.requests == before  # model-a was not even tried
        other = Chat(client, "Hi", system="You are a terse assistant.")  # another prefix
        assert other.turn()["x-router-model"] == "model-a"
        assert other.turn("And then?")["x-router-model"] == "model-a"
    lines = log_lines(capsys.readouterr().out)
    moved = lines[1]["conversation"]
    assert moved["moved_by"] == "failover"
    assert lines[2]["conversation"]["stick"] == "kept"
    assert lines[2]["conversation"]["remembered"] == "model-b"
    assert lines[3]["conversation"]["conversation"] != lines[0]["conversation"]["conversation"]


def test_naming_a_model_is_never_sticky(fakes: FakeProviders, tmp_path: Path) -> None:
    with live_router(rules(fakes), tmp_path) as client:
        chat = Chat(client, "Hi")
        assert chat.turn()["x-router-model"] == "model-a"
        assert chat.turn("Again", model="model-b")["x-router-model"] == "model-b"
        assert chat.turn("And again")["x-router-model"] == "model-a"  # the memory is untouched


def test_an_explicit_conversation_id_groups_turns_whatever_their_prefix(
    fakes: FakeProviders, tmp_path: Path
) -> None:
    headers = {"x-conversation-id": "ticket-42"}
    with live_router(rules(fakes), tmp_path) as client:
        first = Chat(client, "Hi")
        assert first.turn(extra_headers=headers)["x-router-model"] == "model-a"
        fakes.a.control(mode="status", status=503)
        assert first.turn("More", extra_headers=headers)["x-router-model"] == "model-b"
        fakes.a.reset()
        # A trimmed history (another first message) in the same conversation: the id says so.
        trimmed = Chat(client, "Something else entirely")
        trimmed.messages += [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        assert trimmed.turn("Continue", extra_headers=headers)["x-router-model"] == "model-b"


def test_a_bad_explicit_id_is_a_400_naming_the_parameter(fakes: FakeProviders, tmp_path: Path) -> None:
    with live_router(rules(fakes), tmp_path) as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Hi"}],
            metadata={"conversation_id": "x" * 600},
        )
    assert caught.value.body["param"] == "metadata.conversation_id"  # type: ignore[index]
    assert "x" * 600 not in str(caught.value)


@pytest.mark.anyio
@pytest.mark.parametrize(("age_s", "expected"), [(60, "claude"), (600, "model-a")])
async def test_a_warm_50k_prefix_keeps_the_conversation_where_a_move_would_cost_more(
    fakes: FakeProviders, tmp_path: Path, age_s: int, expected: str
) -> None:
    """A conversation on claude ($3 in, $0.30 cached, $15 out) whose last turn read a 50,000-token
    prompt; its next turn is short, and the rules alone send it to `fast` (model-a, $1 / $4). A
    minute after that turn (warm), staying costs 50,000 x 0.3 + 100 x 15 = 16,500 µ$ and moving
    50,000 x 1 + 100 x 4 = 50,400 µ$: the turn stays on claude. Ten minutes after (cold), staying
    would cost 151,500 µ$: it moves. The router on SQLite, the memory in its store."""
    doc = rules(fakes)
    doc["models"]["claude"]["price"]["cached_input"] = 0.3
    body = {
        "model": "auto",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Here is our codebase."},
            {"role": "assistant", "content": "Understood."},
            {"role": "user", "content": "Thanks!"},
        ],
    }
    settings = app_settings(store_url=f"sqlite:///{tmp_path / 'state.db'}")
    app = build_app(doc, settings=settings, keys=KEYS, client=production_client())
    key = app.gateway.conversations.key(identify(body, {}, ""))
    memory = Memory("smart", "claude", time.time() - age_s, prompt_tokens=50_000, completion_tokens=100)
    await app.gateway.store.put(key, memory.as_item(), expires_at=time.time() + 3600)
    async with asgi_client(app) as client:
        explained = (await client.post("/v1/route/explain", json=body)).json()  # writes nothing
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-router-model"] == expected
    assert explained["chain"][0]["model"] == expected, explained["conversation"]
    estimate = explained["conversation"]["estimate"]
    assert (estimate["stay_micro_usd"], estimate["move_micro_usd"]) == (
        (16_500, 50_400) if age_s == 60 else (151_500, 50_400)
    )
