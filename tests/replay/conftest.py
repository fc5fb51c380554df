"""Fixtures for the replay tests: a tiny rules file whose prices make totals easy to check by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tier_router.routing.engine import Rules
from tier_router.routing.loader import load_rules

# Prices in USD per 1M tokens = micro-dollars per token: cheap 1/2, mid 2/4, dear 10/30.
RULES_YAML = """
version: 1
providers:
  local: {kind: mock, base_url: "mock://local"}
models:
  cheap: {provider: local, id: cheap-1, price: {input: 1.0, output: 2.0}}
  mid: {provider: local, id: mid-1, price: {input: 2.0, output: 4.0}}
  dear: {provider: local, id: dear-1, price: {input: 10.0, output: 30.0}}
tiers:
  budget: [cheap]
  standard: [mid]
  premium: [dear]
default_tier: standard
rules:
  - name: hard
    tier: premium
    when: {last_user_matches: {pattern: '\\bprove\\b', ignore_case: true}}
  - name: short
    tier: budget
    when: {last_user_tokens: {max: SHORT_MAX}}
"""


@pytest.fixture
def write_rules(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str = "rules.yaml", short_max: int = 10, drop_short: bool = False) -> Path:
        text = RULES_YAML.replace("SHORT_MAX", str(short_max))
        if drop_short:
            text = text[: text.index("  - name: short")]
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def rules_path(write_rules: Callable[..., Path]) -> Path:
    return write_rules()


@pytest.fixture
def rules(rules_path: Path) -> Rules:
    return load_rules(rules_path)
