"""The router with mock providers only, under uvicorn on 127.0.0.1, for the OpenAI SDK.

Models (each its own mock provider, so each draws its own flaws):
- ``clean``     mock://clean: never flawed
- ``bad-json``  mock://badjson?flaw_rate=1&flaws=json: every JSON answer invalid
- ``bad-tools`` mock://badtools?flaw_rate=1&flaws=tools: every tool call's arguments wrong
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.clients import sync_client
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread

ROUTER_KEY = "rk-mock"
PROVIDERS = {
    "clean": "mock://clean",
    "bad-json": "mock://badjson?flaw_rate=1&flaws=json",
    "bad-tools": "mock://badtools?flaw_rate=1&flaws=tools",
}


def mock_rules() -> dict[str, Any]:
    price = {"input": 0.1, "output": 0.4}
    return {
        "version": 1,
        "providers": {name: {"kind": "mock", "base_url": url} for name, url in PROVIDERS.items()},
        "models": {name: {"provider": name, "id": f"mock-{name}", "price": price} for name in PROVIDERS},
        "tiers": {f"only-{name}": [name] for name in PROVIDERS},
        "default_tier": "only-clean",
        "rules": [],
    }


@pytest.fixture(scope="module")
def router_url() -> Iterator[str]:
    app = build_app(
        mock_rules(),
        settings=app_settings(api_keys=(ROUTER_KEY,), log_requests=False),
        client=production_client(),
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def sdk(router_url: str) -> Iterator[openai.OpenAI]:
    with sync_client(router_url, ROUTER_KEY) as client:
        yield client
