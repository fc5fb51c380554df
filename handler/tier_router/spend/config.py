"""The rules-file sections for spend control: `budgets:`, `limits:` and `cache:`.

Shapes only (like `routing.schema`): every model forbids unknown keys so a typo fails at
load. Cross references (tier names in `pacing.downgrade` / `on_cap`, rule names under
`cache.rules`) need the whole rules file; `unknown_tiers()` / `unknown_rules()` give the
loader what it needs to report them.

Money is written in USD (floats, as humans write it) and turned into integer
micro-dollars exactly once, here (`*_micro` helpers), so nothing downstream sees a float.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import ROUND_FLOOR, Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

TierName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")]
KeyId = Annotated[str, Field(min_length=1, max_length=256)]
Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]

DEFAULT_DOWNGRADE = {"premium": "standard", "standard": "budget"}


def usd_to_micro(usd: float) -> int:
    """USD -> micro-dollars, rounded DOWN (a cap of $0.0000019 allows 1 micro, not 2)."""
    return int((Decimal(str(usd)) * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- budgets: -----------------------------------------------------------------------------


class PacingConfig(Strict):
    """Downgrade traffic while today's spend runs ahead of an even spread over the day."""

    enabled: bool = True
    slack: float = Field(
        default=0.1, ge=0, le=10, description="low priority is downgraded above 1+slack × pace"
    )
    min_day_fraction: float = Field(
        default=1 / 24,
        gt=0,
        le=1,
        description="the pace allowance never drops below this fraction of the day (so the first"
        " minutes after the day starts do not downgrade everything)",
    )
    downgrade: dict[TierName, TierName] = Field(
        default_factory=lambda: dict(DEFAULT_DOWNGRADE), description="one step down per tier"
    )

    @field_validator("downgrade")
    @classmethod
    def _no_self_loops(cls, value: dict[str, str]) -> dict[str, str]:
        for src, dst in value.items():
            if src == dst:
                raise ValueError(f"tier {src!r} downgrades to itself")
        return value


class BudgetConfig(Strict):
    """Daily budgets: a paced soft limit and a hard cap, global and per router key.

    No budget configured (`daily_usd`, `per_key_daily_usd` and `key_daily_usd` all
    empty) = no reservations, no pacing; spend is still counted by the ledger.
    """

    daily_usd: Usd | None = Field(default=None, description="hard cap for all traffic, per day")
    per_key_daily_usd: Usd | None = Field(default=None, description="hard cap for each router key")
    key_daily_usd: dict[KeyId, Usd] = Field(
        default_factory=dict, description="per router key id; overrides per_key_daily_usd"
    )
    pacing: PacingConfig = PacingConfig()
    on_cap: str = Field(
        default="reject",
        pattern=r"^(reject|tier:[A-Za-z0-9][A-Za-z0-9._:/@+-]*)$",
        description="'reject' (429) or 'tier:<name>': retry the request once on that tier",
    )
    day_start_hour: int = Field(default=0, ge=0, le=23, description="UTC hour at which the budget day starts")
    retention_days: int = Field(default=35, ge=1, le=3660, description="how long daily counters are kept")
    reservation_margin: float = Field(
        default=1.5, ge=1, le=100, description="multiplier on the estimated input tokens when reserving"
    )
    default_max_output_tokens: int = Field(
        default=4096,
        ge=1,
        description="output tokens reserved when neither the request (max_tokens) nor the model"
        " (max_output) bounds them",
    )
    on_store_error: Literal["allow", "reject"] = Field(
        default="allow",
        description="state store unreachable: let requests through uncounted, or fail them (503)",
    )

    @property
    def enabled(self) -> bool:
        return self.daily_usd is not None or self.per_key_daily_usd is not None or bool(self.key_daily_usd)

    @property
    def cap_tier(self) -> str | None:
        """The tier named by `on_cap: tier:<name>`, else None."""
        return self.on_cap.partition(":")[2] if self.on_cap.startswith("tier:") else None

    def daily_micro(self) -> int | None:
        return None if self.daily_usd is None else usd_to_micro(self.daily_usd)

    def key_daily_micro(self, key_id: str | None) -> int | None:
        """The cap for one router key, or None when that key has none."""
        if key_id is None:
            return None
        usd = self.key_daily_usd.get(key_id, self.per_key_daily_usd)
        return None if usd is None else usd_to_micro(usd)

    def unknown_tiers(self, tiers: Collection[str]) -> list[str]:
        """Problems for the loader. The DEFAULT downgrade map is exempt (it names the
        conventional premium/standard/budget tiers, which a rules file need not have):
        its entries naming unknown tiers are simply inactive."""
        problems = []
        if "downgrade" in self.pacing.model_fields_set:
            for src, dst in self.pacing.downgrade.items():
                for name in (src, dst):
                    if name not in tiers:
                        problems.append(f"budgets.pacing.downgrade: unknown tier {name!r}")
        if self.cap_tier is not None and self.cap_tier not in tiers:
            problems.append(f"budgets.on_cap: unknown tier {self.cap_tier!r}")
        return problems


# --- limits: ------------------------------------------------------------------------------


class KeyRateLimit(Strict):
    """One router key's limits. An omitted limit inherits the top-level one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    requests_per_minute: int | None = Field(
        default=None, ge=0, validation_alias=AliasChoices("requests_per_minute", "rpm")
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=0, validation_alias=AliasChoices("tokens_per_minute", "tpm")
    )


class RateLimitConfig(KeyRateLimit):
    """Per router key, fixed one-minute windows. The top-level values apply to every key."""

    keys: dict[KeyId, KeyRateLimit] = Field(default_factory=dict)

    def for_key(self, key_id: str) -> tuple[int | None, int | None]:
        """(requests_per_minute, tokens_per_minute) for one key; None = unlimited."""
        own = self.keys.get(key_id)
        if own is None:
            return self.requests_per_minute, self.tokens_per_minute
        return (
            self.requests_per_minute if own.requests_per_minute is None else own.requests_per_minute,
            self.tokens_per_minute if own.tokens_per_minute is None else own.tokens_per_minute,
        )

    @property
    def enabled(self) -> bool:
        limits = [self, *self.keys.values()]
        return any(k.requests_per_minute is not None or k.tokens_per_minute is not None for k in limits)


# --- cache: -------------------------------------------------------------------------------


class CacheOverride(Strict):
    enabled: bool | None = None
    ttl_s: int | None = Field(default=None, ge=1, le=30 * 86400)


class CachePolicy(Strict):
    """What applies to one request after tier and rule overrides."""

    enabled: bool
    ttl_s: int


class CacheConfig(Strict):
    """Exact-match response cache. Off unless `enabled: true`.

    Precedence: rules.<rule> over tiers.<tier> over the top level; the request header
    (`header: on|off`) is applied by the caller on top (see `spend.cache.header_opt_in`).
    """

    enabled: bool = False
    ttl_s: int = Field(default=3600, ge=1, le=30 * 86400)
    scope: Literal["key", "global"] = Field(
        default="key",
        description="'key': each router key has its own cache (no cross-tenant probing);"
        " 'global': all keys share hits",
    )
    header: str | None = Field(
        default="x-router-cache",
        min_length=1,
        description="request header: 'on' caches a non-deterministic request, 'off' bypasses",
    )
    max_item_bytes: int = Field(default=350_000, ge=1_000, le=399_000)
    tiers: dict[TierName, CacheOverride] = Field(default_factory=dict)
    rules: dict[TierName, CacheOverride] = Field(default_factory=dict)

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    def policy(self, tier: str | None, rule: str | None) -> CachePolicy:
        enabled, ttl = self.enabled, self.ttl_s
        for override in (self.tiers.get(tier or ""), self.rules.get(rule or "")):
            if override is not None:
                if override.enabled is not None:
                    enabled = override.enabled
                if override.ttl_s is not None:
                    ttl = override.ttl_s
        return CachePolicy(enabled=enabled, ttl_s=ttl)

    def unknown_tiers(self, tiers: Collection[str]) -> list[str]:
        return [f"cache.tiers: unknown tier {t!r}" for t in self.tiers if t not in tiers]

    def unknown_rules(self, rules: Collection[str]) -> list[str]:
        """`default` (no rule matched) and `explicit` (model/tier named) are always valid."""
        known = {*rules, "default", "explicit"}
        return [f"cache.rules: unknown rule {r!r}" for r in self.rules if r not in known]
