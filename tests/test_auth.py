"""Tier-restricted router keys decide on the decision's kind, never on a rule's name."""

from __future__ import annotations

import asyncio
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

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {"mock": {"kind": "mock", "base_url": "mock://m"}},
    "models": {
        "small": {"provider": "mock", "id": "mock-small", "price": {"input": 0.1, "output": 0.2}},
        "large": {"provider": "mock", "id": "mock-large", "price": {"input": 3.0, "output": 15.0}},
    },
    "tiers": {"cheap": ["small"], "mid": ["large"]},
    "default_tier": "mid",
    "rules": [
        # Rules may be called anything, including the labels of the two rule-less kinds.
        {"name": "explicit", "tier": "cheap", "when": {"last_user_matches": {"pattern": "hello"}}},
        {"name": "default", "tier": "cheap", "when": {"last_user_matches": {"pattern": "howdy"}}},
    ],
}


def chat(app: Any, model: str, text: str) -> httpx.Response:
    async def call() -> httpx.Response:
        async with asgi_client(app) as client:
            return await client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": text}]},
                headers={"authorization": "Bearer k-mid"},
            )

    return asyncio.run(call())


@pytest.fixture
def app(tmp_path: Path) -> Any:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        yaml.safe_dump({"keys": [{"name": "mid-only", "sha256": hash_key("k-mid"), "tiers": ["mid"]}]})
    )
    settings = Settings(rules_path=tmp_path / "rules.yaml", keys_file=keys, log_requests=False)
    return create_app(settings, rules=parse_rules(RULES), store=MemoryStore())


@pytest.mark.parametrize("text", ["hello there", "howdy"])
def test_a_rule_named_like_a_kind_routes_a_restricted_key_to_its_tier(app: Any, text: str) -> None:
    response = chat(app, "auto", text)
    assert response.status_code == 200, response.text
    assert response.headers["x-router-tier"] == "mid"  # moved to the tier the key allows, not refused
    assert response.headers["x-router-model"] == "large"


def test_naming_a_tier_the_key_may_not_use_is_refused(app: Any) -> None:
    response = chat(app, "cheap", "hello there")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tier_not_allowed"
    assert response.headers["x-router-request-id"]
