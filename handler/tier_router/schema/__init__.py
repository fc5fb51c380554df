"""The rules file (`rules/*.yaml`), as pydantic models: the one place its shape is defined.

    common      Strict (unknown keys are errors), Name, Usd, Priority, usd_to_micro
    routing     providers (retries), models, prices, conditions, rules, priority, breakers
    quality     weighted tiers, cascades, experiments, rollouts, sticky sources
    judging     sampled judging and feedback (the `quality:` section)
    spend       budgets (pacing, hard cap), limits, cache
    prompt_cache  automatic provider prompt-cache breakpoints
    conversations  sticky conversations, cache-aware moves
    rules_file  RulesFile: the whole file, and the defaults that need all of it

Only shapes live here. Cross references (a tier naming an unknown model, a rule naming an
unknown tier, a downgrade to an unknown tier) and regex compilation are checked by
`routing.loader`, which turns every problem into one `RulesError` naming the file, the
rule (or section) and the reason.

Pacing without naming tiers: tiers may have any names, so nothing here knows "premium" or
"budget". When `budgets.pacing.downgrade` is omitted, each tier's paced requests move to
the nearest tier whose every model is cheaper (per input and per output token) than every
model of that tier; a tier with no such tier below it is never downgraded (see
`derive_downgrade`). With the usual three tiers that is premium -> standard -> budget;
a file whose tiers are not ordered by price that clearly gets fewer downgrades, never a
dearer one. Write the map to choose otherwise, or `downgrade: {}` for none.

The package imports lazily: `from tier_router.schema import RulesFile` builds the validation
models (and imports pydantic) on first use, so `schema.units` and `schema.forms` (what a
compiled rules file loads into) stay importable without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tier_router.schema.common import (
        NAME_PATTERN,
        PRIORITIES,
        KeyId,
        Name,
        Priority,
        Strict,
        Usd,
        usd_to_micro,
    )
    from tier_router.schema.conversations import ConversationsConfig
    from tier_router.schema.judging import FeedbackSpec, JudgeSpec, QualitySpec, RuleQuality
    from tier_router.schema.prompt_cache import PromptCacheConfig, PromptCacheOverride
    from tier_router.schema.quality import CascadeSpec, Experiment, TierSpec, WeightedModel
    from tier_router.schema.routing import (
        Breakers,
        Condition,
        HeaderTest,
        HealthCheck,
        MetadataTest,
        Model,
        Pattern,
        Price,
        PrioritySource,
        Provider,
        Range,
        Retry,
        Routing,
        Rule,
        Timeouts,
        ValueTest,
    )
    from tier_router.schema.rules_file import RulesFile
    from tier_router.schema.spend import (
        BudgetConfig,
        CacheConfig,
        CacheOverride,
        CachePolicy,
        KeyRateLimit,
        PacingConfig,
        RateLimitConfig,
        derive_downgrade,
    )

_HOMES = {
    "Breakers": "tier_router.schema.routing",
    "BudgetConfig": "tier_router.schema.spend",
    "CacheConfig": "tier_router.schema.spend",
    "CacheOverride": "tier_router.schema.spend",
    "CachePolicy": "tier_router.schema.forms",
    "CascadeSpec": "tier_router.schema.quality",
    "Condition": "tier_router.schema.routing",
    "ConversationsConfig": "tier_router.schema.conversations",
    "Experiment": "tier_router.schema.quality",
    "FeedbackSpec": "tier_router.schema.judging",
    "HeaderTest": "tier_router.schema.routing",
    "HealthCheck": "tier_router.schema.routing",
    "JudgeSpec": "tier_router.schema.judging",
    "KeyId": "tier_router.schema.common",
    "KeyRateLimit": "tier_router.schema.spend",
    "MetadataTest": "tier_router.schema.routing",
    "Model": "tier_router.schema.routing",
    "NAME_PATTERN": "tier_router.schema.units",
    "Name": "tier_router.schema.common",
    "PRIORITIES": "tier_router.schema.units",
    "PacingConfig": "tier_router.schema.spend",
    "Pattern": "tier_router.schema.routing",
    "Price": "tier_router.schema.routing",
    "Priority": "tier_router.schema.units",
    "PrioritySource": "tier_router.schema.routing",
    "PromptCacheConfig": "tier_router.schema.prompt_cache",
    "PromptCacheOverride": "tier_router.schema.prompt_cache",
    "Provider": "tier_router.schema.routing",
    "QualitySpec": "tier_router.schema.judging",
    "Range": "tier_router.schema.routing",
    "RateLimitConfig": "tier_router.schema.spend",
    "Retry": "tier_router.schema.routing",
    "Routing": "tier_router.schema.routing",
    "Rule": "tier_router.schema.routing",
    "RuleQuality": "tier_router.schema.judging",
    "RulesFile": "tier_router.schema.rules_file",
    "Strict": "tier_router.schema.common",
    "TierSpec": "tier_router.schema.quality",
    "Timeouts": "tier_router.schema.routing",
    "Usd": "tier_router.schema.common",
    "ValueTest": "tier_router.schema.routing",
    "WeightedModel": "tier_router.schema.quality",
    "derive_downgrade": "tier_router.schema.spend",
    "usd_to_micro": "tier_router.schema.units",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "NAME_PATTERN",
    "PRIORITIES",
    "Breakers",
    "BudgetConfig",
    "CacheConfig",
    "CacheOverride",
    "CachePolicy",
    "CascadeSpec",
    "Condition",
    "ConversationsConfig",
    "Experiment",
    "FeedbackSpec",
    "HeaderTest",
    "HealthCheck",
    "JudgeSpec",
    "KeyId",
    "KeyRateLimit",
    "MetadataTest",
    "Model",
    "Name",
    "PacingConfig",
    "Pattern",
    "Price",
    "Priority",
    "PrioritySource",
    "PromptCacheConfig",
    "PromptCacheOverride",
    "Provider",
    "QualitySpec",
    "Range",
    "RateLimitConfig",
    "Retry",
    "Routing",
    "Rule",
    "RuleQuality",
    "RulesFile",
    "Strict",
    "TierSpec",
    "Timeouts",
    "Usd",
    "ValueTest",
    "WeightedModel",
    "derive_downgrade",
    "usd_to_micro",
]
