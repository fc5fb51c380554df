"""Adversary: router keys as tenants, and keys limited to some tiers (`tiers:` in the keys file).

A key limited to tier `mid` has every routed request moved there (`auth.check_tier`). Stickiness
placed the turn BEFORE that move, on the rules' unrestricted decision (tier `cheap`): the
conversation's memory (tier `mid`, the model a failover moved it to) was priced against a tier the
key cannot use, "moved" off, and the key's move then put the failed model first again, every
turn. The held promises: one key's conversation never places another key's (same prompts, same
explicit id), and a key never reaches a tier it may not use through a conversation's memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tier_router.app import create_app
from tier_router.router_keys import hash_key
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.support.router_app import asgi_client

pytestmark = pytest.mark.anyio
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "ok": {"kind": "mock", "base_url": "mock://ok"},
        "down": {"kind": "mock", "base_url": "mock://down?fail_rate=1"},
    },
    "models": {
        "small": {"provider": "ok", "id": "mock-small", "price": {"input": 0.1, "output": 0.2}},
        "flaky": {"provider": "down", "id": "mock-flaky", "price": {"input": 3.0, "output": 15.0}},
        "large": {"provider": "ok", "id": "mock-large", "price": {"input": 3.0, "output": 15.0}},
    },
    "tiers": {"cheap": ["small"], "mid": ["flaky", "large"]},
    "default_tier": "cheap",
    "rules": [{"name": "hard", "tier": "mid", "when": {"last_user_matches": {"pattern": "prove"}}}],
}
KEYS = {"k-a": "team-a", "k-b": "team-b"}
"""Unlimited keys (secret: name); "k-mid" is the key limited to tier `mid`."""


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return make_app(tmp_path, MemoryStore())


def make_app(tmp_path: Path, store: MemoryStore) -> Any:
    settings = Settings(rules_path=tmp_path / "rules.yaml", keys_file=make_keys(tmp_path), log_requests=True)
    return create_app(settings, rules=parse_rules(RULES), store=store)


def make_keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys.yaml"
    entries: list[dict[str, Any]] = [{"name": "mid-only", "sha256": hash_key("k-mid"), "tiers": ["mid"]}]
    entries += [{"name": name, "sha256": hash_key(secret)} for secret, name in KEYS.items()]
    keys.write_text(yaml.safe_dump({"keys": entries}))
    return keys


class Chat:
    def __init__(self, client: httpx.AsyncClient, key: str, **headers: str) -> None:
        self.client, self.key, self.headers = client, key, headers
        self.messages: list[dict[str, Any]] = []

    async def turn(self, text: str, model: str = "auto") -> httpx.Response:
        self.messages.append({"role": "user", "content": text})
        response = await self.client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": self.messages},
            headers={"authorization": f"Bearer {self.key}", **self.headers},
        )
        assert response.status_code == 200, response.text
        self.messages.append(response.json()["choices"][0]["message"])
        return response


def conversations(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    chats = [
        line
        for line in lines
        if line.get("event") == "request" and line.get("path") == "/v1/chat/completions"
    ]
    return [line["conversation"] for line in chats]


async def test_a_tier_limited_key_keeps_its_conversation_on_the_model_that_answered(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with asgi_client(app) as client:
        chat = Chat(client, "k-mid")
        first = await chat.turn("hi")  # the rules: cheap; the key: mid; flaky fails, large answers
        assert (first.headers["x-router-tier"], first.headers["x-router-model"]) == ("mid", "large")
        assert first.headers["x-router-attempts"] != "1"
        for text in ("and then?", "go on"):
            later = await chat.turn(text)
            assert later.headers["x-router-model"] == "large"
            assert later.headers["x-router-attempts"] == "1"  # the failed model is not tried first
        explained = await chat.client.post(
            "/v1/route/explain",
            json={"model": "auto", "messages": [*chat.messages, {"role": "user", "content": "more"}]},
            headers={"authorization": "Bearer k-mid"},
        )
    assert explained.status_code == 200, explained.text
    assert explained.json()["tier"] == "mid"  # as the turn would be: the key's tier ...
    assert explained.json()["chain"][0]["model"] == "large"  # ... on the conversation's model
    assert explained.json()["conversation"]["stick"] == "kept"
    placed = conversations(capsys.readouterr().out)
    assert placed[0]["moved_by"] == "failover"
    assert [p["stick"] for p in placed[1:]] == ["kept", "kept"]
    assert all(p["remembered"] == "large" for p in placed[1:])


async def test_one_keys_memory_never_places_another_keys_turn(app: Any) -> None:
    """Same explicit id, same prompts under two keys: team-a's conversation failed over to
    `large`; team-b's identical turn knows nothing of it (its own first turn, re-decided, puts
    `flaky` first). And a key cannot reach a tier it may not use through the shared id."""
    async with asgi_client(app) as client:
        shared = {"x-conversation-id": "shared-42"}
        a = Chat(client, "k-a", **shared)
        await a.turn("prove it")  # team-a on mid: flaky failed, large answered
        second = await a.turn("prove more")
        assert (second.headers["x-router-model"], second.headers["x-router-attempts"]) == ("large", "1")
        b = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": a.messages[:3]},  # team-a's second turn, verbatim
            headers={"authorization": "Bearer k-b", **shared},
        )
        assert b.headers["x-router-model"] == "large"
        assert b.headers["x-router-attempts"] != "1"  # flaky first: team-a's memory was not read
        refused = await client.post(
            "/v1/chat/completions",
            json={"model": "cheap", "messages": a.messages[:3]},
            headers={"authorization": "Bearer k-mid", **shared},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "tier_not_allowed"


async def test_a_tier_limited_keys_first_turn_is_re_decided_within_its_tiers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first turn, answered where the key's tiers sent it, is not written; the second turn,
    in another process, re-decides it as the key would have had it (mid), not as the rules alone
    (cheap, a tier the key cannot use)."""
    store = MemoryStore()
    doc = {**RULES, "tiers": {"cheap": ["small"], "mid": ["large", "flaky"]}}
    first_process, second_process = (
        create_app(
            Settings(rules_path=tmp_path / "rules.yaml", keys_file=make_keys(tmp_path), log_requests=True),
            rules=parse_rules(doc),
            store=store,
        )
        for _ in range(2)
    )
    async with asgi_client(first_process) as one, asgi_client(second_process) as two:
        chat = Chat(one, "k-mid")
        assert (await chat.turn("hi")).headers["x-router-model"] == "large"
        chat.client = two
        assert (await chat.turn("and then?")).headers["x-router-model"] == "large"
    placed = conversations(capsys.readouterr().out)[1]
    assert (placed["stick"], placed["remembered"], placed.get("inferred")) == ("kept", "large", True)


async def test_a_memory_from_before_the_key_was_limited_is_never_followed_out_of_its_tiers(
    tmp_path: Path,
) -> None:
    """team-a's conversation is on `mid`; the keys file then limits team-a to `cheap` (a deploy:
    another process reads the new file). Even with stickiness that never leaves a model for a
    rule (`cache_aware: false`), the turn goes to `cheap`: the memory cannot take a key out of
    its tiers."""
    store = MemoryStore()
    doc = {**RULES, "conversations": {"cache_aware": False}}
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    limited = after / "keys.yaml"
    limited.write_text(
        yaml.safe_dump({"keys": [{"name": "team-a", "sha256": hash_key("k-a"), "tiers": ["cheap"]}]})
    )
    old = create_app(
        Settings(rules_path=tmp_path / "r.yaml", keys_file=make_keys(before)),
        rules=parse_rules(doc),
        store=store,
    )
    new = create_app(
        Settings(rules_path=tmp_path / "r.yaml", keys_file=limited), rules=parse_rules(doc), store=store
    )
    async with asgi_client(old) as one, asgi_client(new) as two:
        chat = Chat(one, "k-a", **{"x-conversation-id": "c-1"})
        assert (await chat.turn("prove it")).headers["x-router-tier"] == "mid"
        assert (await chat.turn("hello")).headers["x-router-tier"] == "mid"  # kept there by the memory
        chat.client = two
        limited_turn = await chat.turn("hello again")
    assert (limited_turn.headers["x-router-tier"], limited_turn.headers["x-router-model"]) == (
        "cheap",
        "small",
    )
