"""The top-level shape of a rules file, and the defaults that need the whole file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from tier_router.schema.common import Name, Strict
from tier_router.schema.conversations import ConversationsConfig
from tier_router.schema.embeddings import EmbeddingsSection
from tier_router.schema.forms import RulesFileView
from tier_router.schema.judging import QualitySpec
from tier_router.schema.prompt_cache import PromptCacheConfig
from tier_router.schema.quality import Experiment, TierSpec, ValidatorEntry
from tier_router.schema.routing import Breakers, Model, PrioritySource, Provider, Routing, Rule
from tier_router.schema.spend import BudgetConfig, CacheConfig, RateLimitConfig, derive_downgrade


class RulesFile(RulesFileView, Strict):
    version: Literal[1] = 1
    providers: dict[Name, Provider] = Field(min_length=1)
    models: dict[Name, Model] = Field(min_length=1)
    tier_specs: dict[Name, TierSpec] = Field(
        alias="tiers",
        min_length=1,
        description="tier → its models (a list, or {models: [...], cascade: {...}}); read the chains"
        " of model names as `tiers`",
    )
    default_tier: Name
    aliases: dict[Name, Name] = Field(
        default_factory=dict, description="extra request model names → 'auto', a tier or a model"
    )
    priority: PrioritySource = PrioritySource()
    routing: Routing = Routing()
    breakers: Breakers = Breakers()
    budgets: BudgetConfig = BudgetConfig()
    limits: RateLimitConfig = RateLimitConfig()
    cache: CacheConfig = CacheConfig()
    prompt_cache: PromptCacheConfig = Field(
        default=PromptCacheConfig(),
        description="automatic Anthropic cache breakpoints: {auto: true, min_tokens: 1024}, per tier/rule",
    )
    conversations: ConversationsConfig = Field(
        default=ConversationsConfig(),
        description="sticky conversations: later turns stay on the model that answered (cache-aware moves)",
    )
    validators: dict[Name, ValidatorEntry] = Field(
        default_factory=dict, description="configured validators, usable by name in a cascade's `on:`"
    )
    experiments: dict[Name, Experiment] = Field(default_factory=dict)
    quality: QualitySpec = QualitySpec()
    rules: list[Rule] = Field(default_factory=list)
    embeddings: EmbeddingsSection | None = Field(
        default=None, description="routing of POST /v1/embeddings with model auto (embedding tiers)"
    )
    _tiers: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _tier_names(self) -> RulesFile:
        self._tiers = {tier: spec.names for tier, spec in self.tier_specs.items()}
        return self

    @model_validator(mode="after")
    def _derive_pacing(self) -> RulesFile:
        """Fill in `budgets.pacing.downgrade` from the tiers' prices when the file omits it
        (models the file does not define are left out: the loader reports them)."""
        pacing = self.budgets.pacing
        if pacing.downgrade is None:
            prices = {  # chat tiers only: pacing never moves a request to another kind of tier
                tier: [self.models[m].price for m in spec.names if m in self.models]
                for tier, spec in self.tier_specs.items()
                if all(self.models[m].kind == "chat" for m in spec.names if m in self.models)
            }
            derived = pacing.model_copy(update={"downgrade": derive_downgrade(prices)})
            # Still inside validation, before anyone holds the object: set the frozen field.
            self.__dict__["budgets"] = self.budgets.model_copy(update={"pacing": derived})
        return self
