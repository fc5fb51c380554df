"""Pacing without naming tiers: the default downgrade map comes from the tiers' prices."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from tier_router.routing.loader import RulesError, load_rules, parse_rules
from tier_router.schema import Price, derive_downgrade

ROOT = Path(__file__).resolve().parents[2]


def price(input: float, output: float) -> Price:
    return Price(input=input, output=output)


def rules_file(tiers: dict[str, list[str]], budgets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Models priced from 'dear' to 'cheap' (input / output per 1M tokens)."""
    raw: dict[str, Any] = {
        "providers": {"p": {"kind": "mock", "base_url": "mock://p"}},
        "models": {
            "opus": {"provider": "p", "id": "o", "price": {"input": 15, "output": 75}},
            "sonnet": {"provider": "p", "id": "s", "price": {"input": 3, "output": 15}},
            "gpt": {"provider": "p", "id": "g", "price": {"input": 2, "output": 8}},
            "haiku": {"provider": "p", "id": "h", "price": {"input": 1, "output": 5}},
            "nano": {"provider": "p", "id": "n", "price": {"input": 0.1, "output": 0.4}},
            "odd": {"provider": "p", "id": "x", "price": {"input": 0.05, "output": 20}},
        },
        "tiers": tiers,
        "default_tier": next(iter(tiers)),
    }
    if budgets is not None:
        raw["budgets"] = budgets
    return raw


def downgrade_of(raw: dict[str, Any]) -> dict[str, str] | None:
    return parse_rules(copy.deepcopy(raw), "pacing.yaml").spec.budgets.pacing.downgrade


def test_tiers_with_any_names_get_one_step_down_each() -> None:
    # Listed cheapest first, with names that say nothing about price.
    raw = rules_file({"bronze": ["nano"], "silver": ["haiku", "gpt"], "gold": ["sonnet", "opus"]})
    assert downgrade_of(raw) == {"silver": "bronze", "gold": "silver"}  # one step, never two


def test_the_shipped_rules_pace_premium_to_standard_to_budget() -> None:
    spec = load_rules(ROOT / "rules" / "router.yaml").spec
    assert spec.budgets.pacing.downgrade == {"premium": "standard", "standard": "budget"}


def test_no_downgrade_when_no_tier_is_cheaper_throughout() -> None:
    # `mixed` shares a model with `cheap`; `odd` has a lower input but a higher output price
    # than `gpt`: neither is cheaper on every count, so neither is a step down.
    raw = rules_file({"top": ["gpt"], "cheap": ["haiku"], "mixed": ["haiku", "nano"], "weird": ["odd"]})
    assert downgrade_of(raw) == {"top": "cheap"}


def test_equally_priced_tiers_go_to_the_first_listed_and_never_to_each_other() -> None:
    raw = rules_file({"a": ["gpt"], "b": ["haiku"], "c": ["haiku"], "d": ["nano"]})
    assert downgrade_of(raw) == {"a": "b", "b": "d", "c": "d"}


def test_an_explicit_map_wins_and_an_empty_one_turns_downgrades_off() -> None:
    tiers = {"bronze": ["nano"], "silver": ["haiku"], "gold": ["sonnet"]}
    explicit = rules_file(tiers, {"daily_usd": 5, "pacing": {"downgrade": {"gold": "bronze"}}})
    assert downgrade_of(explicit) == {"gold": "bronze"}
    assert downgrade_of(rules_file(tiers, {"daily_usd": 5, "pacing": {"downgrade": {}}})) == {}


def test_an_explicit_map_naming_unknown_tiers_still_fails_at_load() -> None:
    raw = rules_file({"bronze": ["nano"]}, {"pacing": {"downgrade": {"gold": "bronze"}}})
    with pytest.raises(RulesError) as caught:
        parse_rules(raw, "pacing.yaml")
    assert "pacing.yaml: budgets.pacing.downgrade: unknown tier 'gold'" in str(caught.value)


def test_a_tier_naming_an_unknown_model_is_reported_not_derived_from() -> None:
    raw = rules_file({"gold": ["sonnet", "nope"], "bronze": ["nano"]})
    with pytest.raises(RulesError) as caught:
        parse_rules(raw, "pacing.yaml")
    assert "tier 'gold'[1]: unknown model 'nope'" in str(caught.value)


def test_derive_downgrade_directly() -> None:
    assert derive_downgrade({}) == {}
    assert derive_downgrade({"only": [price(1, 1)]}) == {}
    assert derive_downgrade({"empty": [], "x": [price(1, 1)]}) == {}  # an empty chain is nobody's step
    # cached-input prices are not compared
    assert derive_downgrade({"a": [Price(input=1, output=1, cached_input=0.1)], "b": [price(1, 0.5)]}) == {
        "a": "b"
    }
