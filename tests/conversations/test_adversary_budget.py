"""Adversary: a conversation kept on a dearer tier than its rules pick must still be paid for by
the budget: the reservation is made on the model the turn is forwarded to (the placed decision),
so a hard cap that the dearer model's worst case would pass sends the turn to the cap's fallback
tier instead of letting it through on an unreserved model. Budget pacing, likewise, sees the tier
stickiness kept, and a paced move is not remembered as the conversation's choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.support.router_app import asgi_client

pytestmark = pytest.mark.anyio
SYSTEM = "You are a careful mathematician. " * 400  # ~3,000 tokens every turn repeats
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {"mock": {"kind": "mock", "base_url": "mock://m"}},
    "models": {
        "small": {"provider": "mock", "id": "mock-small", "price": {"input": 1.0, "output": 4.0}},
        "large": {
            "provider": "mock",
            "id": "mock-large",
            "price": {"input": 3.0, "cached_input": 0.1, "output": 15.0},
        },
    },
    "tiers": {"cheap": ["small"], "premium": ["large"]},
    "default_tier": "cheap",
    "rules": [{"name": "hard", "tier": "premium", "when": {"last_user_matches": {"pattern": "prove"}}}],
    "budgets": {"daily_usd": 0.08, "on_cap": "tier:cheap", "pacing": {"enabled": False}},
}


async def send(client: httpx.AsyncClient, messages: list[dict[str, Any]], max_tokens: int) -> httpx.Response:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "auto", "messages": messages, "max_tokens": max_tokens},
        headers={"x-conversation-id": "proof-1"},
    )
    assert response.status_code == 200, response.text
    messages.append(response.json()["choices"][0]["message"])
    return response


async def test_a_kept_turn_is_reserved_on_the_model_it_is_kept_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(rules_path=tmp_path / "rules.yaml", log_requests=True)
    app = create_app(settings, rules=parse_rules(RULES), store=MemoryStore())
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    messages.append({"role": "user", "content": "prove it"})
    async with asgi_client(app) as client:
        first = await send(client, messages, 10)
        assert first.headers["x-router-model"] == "large"
        messages.append({"role": "user", "content": "thanks"})  # the rules alone: cheap
        kept = await send(client, messages, 10)  # warm and cheap to stay: kept on large
        assert kept.headers["x-router-model"] == "large"
        messages.append({"role": "user", "content": "and again"})
        capped = await send(client, messages, 2000)  # large's worst case passes the cap; small's not
        assert capped.headers["x-router-model"] == "small"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests[1]["conversation"]["stick"] == "kept"
    assert requests[2]["conversation"]["stick"] == "kept"  # placed on large ...
    assert requests[2]["downgraded_from"] == "premium"  # ... and its reservation did not fit there
    assert requests[2]["conversation"]["moved_by"] == "pacing"
