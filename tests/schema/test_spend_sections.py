"""The rules-file sections `budgets:`, `limits:` and `cache:` (`tier_router.schema.spend`)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from tier_router.schema import BudgetConfig, CacheConfig, RateLimitConfig, usd_to_micro

PROPOSED = """
budgets:
  daily_usd: 50
  per_key_daily_usd: 10
  key_daily_usd: {batch-jobs: 25, ci: 2.5}
  pacing:
    slack: 0.1
    min_day_fraction: 0.0417
    downgrade: {premium: standard, standard: budget}
  on_cap: tier:budget
  day_start_hour: 8
  retention_days: 35
  reservation_margin: 1.5
  default_max_output_tokens: 4096
  on_store_error: allow

limits:
  requests_per_minute: 600
  tokens_per_minute: 2000000
  keys:
    ci: {rpm: 60, tpm: 200000}
    batch-jobs: {tokens_per_minute: 5000000}

cache:
  enabled: true
  ttl_s: 3600
  scope: key
  header: X-Router-Cache
  tiers:
    premium: {ttl_s: 600}
  rules:
    background-batch: {ttl_s: 86400}
    hard-reasoning: {enabled: false}
"""


class Sections(BaseModel):
    """The three sections alone, without the rest of a rules file."""

    model_config = ConfigDict(extra="forbid")
    budgets: BudgetConfig = BudgetConfig()
    limits: RateLimitConfig = RateLimitConfig()
    cache: CacheConfig = CacheConfig()


def test_the_proposed_yaml_loads() -> None:
    spec = Sections.model_validate(yaml.safe_load(PROPOSED))
    b = spec.budgets
    assert b.enabled
    assert b.daily_micro() == 50_000_000
    assert b.cap_tier == "budget"
    assert b.key_daily_micro("ci") == 2_500_000
    assert b.key_daily_micro("anyone") == 10_000_000
    assert b.key_daily_micro(None) is None
    assert b.unknown_tiers({"premium", "standard", "budget"}) == []
    limits = spec.limits
    assert limits.enabled
    assert limits.for_key("ci") == (60, 200_000)
    assert limits.for_key("batch-jobs") == (600, 5_000_000)
    assert limits.for_key("other") == (600, 2_000_000)
    cache = spec.cache
    assert cache.header == "x-router-cache"
    assert cache.policy("premium", "code")._asdict() == {"enabled": True, "ttl_s": 600}
    assert cache.policy("premium", "background-batch").ttl_s == 86_400  # rule beats tier
    assert not cache.policy("premium", "hard-reasoning").enabled
    assert cache.policy(None, None)._asdict() == {"enabled": True, "ttl_s": 3600}  # no rule decided
    assert cache.unknown_rules(["background-batch", "hard-reasoning"]) == []
    assert cache.unknown_rules(["background-batch"]) == ["cache.rules: unknown rule 'hard-reasoning'"]


def test_defaults_are_off() -> None:
    spec = Sections()
    assert not spec.budgets.enabled
    assert not spec.limits.enabled
    assert not spec.cache.enabled
    assert spec.budgets.pacing.downgrade is None  # derived from the tiers by a whole rules file
    assert spec.budgets.cap_tier is None


@pytest.mark.parametrize(
    ("section", "data"),
    [
        ("budgets", {"daily": 5}),  # typo
        ("budgets", {"daily_usd": -1}),
        ("budgets", {"daily_usd": float("nan")}),
        ("budgets", {"on_cap": "downgrade"}),
        ("budgets", {"on_cap": "tier:"}),
        ("budgets", {"day_start_hour": 24}),
        ("budgets", {"reservation_margin": 0.9}),
        ("budgets", {"pacing": {"downgrade": {"premium": "premium"}}}),
        ("budgets", {"pacing": {"min_day_fraction": 0}}),
        ("budgets", {"on_store_error": "ignore"}),
        ("limits", {"rpm": -1}),
        ("limits", {"keys": {"ci": {"rps": 1}}}),
        ("cache", {"ttl_s": 0}),
        ("cache", {"scope": "user"}),
        ("cache", {"max_item_bytes": 500_000}),
        ("cache", {"tiers": {"premium": {"enable": False}}}),
    ],
)
def test_mistakes_fail_at_load(section: str, data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Sections.model_validate({section: data})


def test_unknown_tiers_and_rules() -> None:
    assert BudgetConfig(daily_usd=1).unknown_tiers({"fast", "smart"}) == []  # nothing named
    explicit = BudgetConfig.model_validate(
        {"pacing": {"downgrade": {"smart": "fast", "x": "y"}}, "on_cap": "tier:z"}
    )
    assert explicit.unknown_tiers({"fast", "smart"}) == [
        "budgets.pacing.downgrade: unknown tier 'x'",
        "budgets.pacing.downgrade: unknown tier 'y'",
        "budgets.on_cap: unknown tier 'z'",
    ]
    assert CacheConfig(tiers={"gold": {}}).unknown_tiers({"fast"}) == ["cache.tiers: unknown tier 'gold'"]  # type: ignore[dict-item]
    # `default` and `explicit` are not rules: a request no rule decided takes the tier's settings.
    rules = CacheConfig(rules={"default": {}, "explicit": {}})  # type: ignore[dict-item]
    assert rules.unknown_rules(["fast-path"]) == [
        "cache.rules: unknown rule 'default'",
        "cache.rules: unknown rule 'explicit'",
    ]
    assert rules.unknown_rules(["default", "explicit"]) == []  # rules that are really called so


@pytest.mark.parametrize(
    ("usd", "micro"), [(0.1, 100_000), (0.028, 28_000), (50, 50_000_000), (1e-7, 0), (0.0000019, 1), (0, 0)]
)
def test_usd_to_micro_is_exact_and_rounds_down(usd: float, micro: int) -> None:
    assert usd_to_micro(usd) == micro
