"""docs/prompt-cache.md's `prompt_cache_key` sections say what the router does: the providers'
YAML decides as the text says, and the log-line excerpt is the field a real line carries."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx
import yaml
from tier_router.routing.loader import parse_rules

from tests.docs.blocks import Block, blocks
from tests.support.router_app import app_settings, build_app, serve_in_thread

PAGE = "docs/prompt-cache.md"
KEY_SECTION = "prompt_cache_key (OpenAI-compatible providers)"
SEEN_SECTION = "Seen in explain and the log line"


def block(heading: str) -> Block:
    (found,) = [b for b in blocks(PAGE) if b.heading == heading]
    return found


def test_the_providers_example_decides_as_the_text_says() -> None:
    providers = yaml.safe_load(block(KEY_SECTION).text)["providers"]
    rules = {
        "version": 1,
        "providers": providers,
        "models": {
            name: {"provider": name, "id": f"{name}-model", "price": {"input": 1, "output": 2}}
            for name in providers
        },
        "tiers": {"main": list(providers)},
        "default_tier": "main",
    }
    spec = parse_rules(rules, PAGE).spec
    decided = {name: p.sends_prompt_cache_key for name, p in spec.providers.items()}
    assert decided == {"openai": True, "openai-eu": True, "deepseek": False, "batch": False}


def test_the_log_line_excerpt_is_a_real_lines_field() -> None:
    """A mock provider told to take the key (`prompt_cache_key: true`): the line of a
    conversation's turn carries exactly the documented field."""
    documented = json.loads(block(SEEN_SECTION).text)
    rules: dict[str, Any] = {
        "version": 1,
        "providers": {"local": {"kind": "mock", "base_url": "mock://local", "prompt_cache_key": True}},
        "models": {"m": {"provider": "local", "id": "m", "price": {"input": 1, "output": 2}}},
        "tiers": {"main": ["m"]},
        "default_tier": "main",
    }
    app = build_app(rules, settings=app_settings(store_url="memory://"))
    log = io.StringIO()
    app.gateway.access_log._stream = log
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200
        deadline = time.monotonic() + 5
        while '"event": "request"' not in log.getvalue() and '"event":"request"' not in log.getvalue():
            assert time.monotonic() < deadline
            time.sleep(0.02)
    (line,) = [json.loads(t) for t in log.getvalue().splitlines() if '"request"' in t]
    assert {"prompt_cache": line["prompt_cache"]} == documented
