"""Shared fixtures for the routing tests: the shipped rules, a minimal rules-dict builder and
request helpers.

Helpers are fixtures (not imports) so the test modules never depend on how pytest names
this package.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.loader import load_rules, parse_rules
from tier_router.routing.request import Chat, parse_chat

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "rules" / "router.yaml"
SHIPPED_EXAMPLES = ROOT / "rules" / "examples.yaml"
BROKEN_DIR = Path(__file__).resolve().parent / "broken"

MINIMAL: dict[str, Any] = {
    "version": 1,
    "providers": {
        "local": {"kind": "mock", "base_url": "mock://local"},
        "openai": {
            "kind": "openai",
            "base_url": "https://api.openai.com/v1",
            "api_key_env": "OPENAI_API_KEY",
        },
    },
    "models": {
        "small": {"provider": "local", "id": "small-1", "price": {"input": 0.1, "output": 0.4}},
        "medium": {"provider": "openai", "id": "gpt-4.1-mini", "price": {"input": 0.4, "output": 1.6}},
        "large": {"provider": "openai", "id": "gpt-4.1", "price": {"input": 2.0, "output": 8.0}},
    },
    "tiers": {
        "cheap": ["small", "medium"],
        "mid": ["medium", "large"],
        "top": ["large", "medium", "small"],
    },
    "default_tier": "mid",
    "rules": [],
}
"""A valid rules file with no rules: three models, three tiers, default tier `mid`."""


@pytest.fixture(scope="session")
def shipped_rules_path() -> Path:
    return SHIPPED_RULES


@pytest.fixture(scope="session")
def shipped_examples_path() -> Path:
    return SHIPPED_EXAMPLES


@pytest.fixture(scope="session")
def broken_dir() -> Path:
    return BROKEN_DIR


@pytest.fixture(scope="session")
def shipped() -> Rules:
    """The shipped rules/router.yaml, loaded once (Rules is immutable)."""
    return load_rules(SHIPPED_RULES)


@pytest.fixture
def minimal() -> dict[str, Any]:
    """A fresh deep copy of MINIMAL, free to mutate."""
    return copy.deepcopy(MINIMAL)


@pytest.fixture
def make_rules() -> Callable[..., Rules]:
    """`make_rules(rules=[...], **top_level_overrides)` → compiled Rules from MINIMAL."""

    def build(rules: list[dict[str, Any]] | None = None, **top: Any) -> Rules:
        raw = copy.deepcopy(MINIMAL)
        raw["rules"] = rules or []
        raw.update(copy.deepcopy(top))
        return parse_rules(raw, "test-rules.yaml")

    return build


def chat_request(
    prompt: str | None = "hello",
    *,
    model: str = "auto",
    system: str | None = None,
    messages: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Chat:
    """A Chat from a prompt (+ system), or from explicit messages; extra body fields allowed."""
    if messages is None:
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages.append({"role": "user", "content": prompt})
    return parse_chat({"model": model, "messages": messages, **fields})


@pytest.fixture
def chat() -> Callable[..., Chat]:
    return chat_request


@pytest.fixture
def holds(make_rules: Callable[..., Rules]) -> Callable[..., bool]:
    """`holds(when, request_or_prompt, headers=None)`: does a one-rule file route by that rule?"""

    def check(when: dict[str, Any], request: Chat | str, headers: Mapping[str, str] | None = None) -> bool:
        rules = make_rules([{"name": "probe", "tier": "top", "when": when}])
        if isinstance(request, str):
            request = chat_request(request)
        decision = rules.decide(request, dict(headers or {}))
        assert decision.rule_name in ("probe", None)
        return decision.rule_name == "probe"

    return check


@pytest.fixture
def decide_with(make_rules: Callable[..., Rules]) -> Callable[..., Decision]:
    """`decide_with(rules, request, headers=None, **top)` in one call."""

    def run(
        rules: list[dict[str, Any]],
        request: Chat,
        headers: Mapping[str, str] | None = None,
        **top: Any,
    ) -> Decision:
        return make_rules(rules, **top).decide(request, dict(headers or {}))

    return run
