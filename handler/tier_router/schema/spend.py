"""The spend sections of the rules file: `budgets:`, `limits:` and `cache:`.

Cross references (tier names in `pacing.downgrade` / `on_cap`, rule names under
`cache.rules`) need the whole rules file; `unknown_tiers()` / `unknown_rules()` give the
loader what it needs to report them. Money is written in USD (floats, as humans write it)
and turned into integer micro-dollars exactly once, here (`*_micro` helpers), so nothing
downstream sees a float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator

from tier_router.schema.common import (
    MAX_PER_MINUTE,
    MAX_TOKENS,
    NAME_PATTERN,
    KeyId,
    Name,
    Strict,
    Usd,
    WindowSeconds,
)
from tier_router.schema.forms import BudgetView, CacheView, RateLimitView
from tier_router.schema.routing import Price

# --- budgets: -----------------------------------------------------------------------------

Region = Annotated[str, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")]
"""An AWS region's name (`eu-west-1`), as Lambda sets AWS_REGION."""
Share = Annotated[Decimal, Field(gt=0, le=1, max_digits=7)]
"""A region's share of a cap (exact: 0.3 is three tenths, so shares summing to 1 are exactly 1)."""


class PacingConfig(Strict):
    """Downgrade traffic while today's spend runs ahead of an even spread over the day.

    `downgrade` maps a tier to the tier its paced requests move to (one step). Omitted, it
    is derived from the tiers' prices by `derive_downgrade` when the rules file loads; `{}`
    turns downgrades off while keeping the hard cap.
    """

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
    downgrade: dict[Name, Name] | None = Field(
        default=None, description="one step down per tier; omitted: derived from the tiers' prices"
    )

    @field_validator("downgrade")
    @classmethod
    def _no_self_loops(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for src, dst in (value or {}).items():
            if src == dst:
                raise ValueError(f"tier {src!r} downgrades to itself")
        return value


def derive_downgrade(tiers: Mapping[str, Sequence[Price]]) -> dict[str, str]:
    """The default pacing map, from each tier's model prices (tier -> its chain's prices).

    Tier B is *below* tier A when every model of B is cheaper than every model of A, where
    a model is cheaper than another when it costs no more per input token and no more per
    output token, and less for one of them (cached-input prices are not compared). So a
    downgrade can never make any attempt of a request, fallbacks included, dearer. A tier
    moves to the nearest tier below it: one that no other tier below it is above (the first
    listed if several are). A tier with no tier below it is not downgraded.
    """
    lower = {a: [b for b in tiers if _below(tiers[b], tiers[a])] for a in tiers}
    downgrade = {}
    for tier, candidates in lower.items():
        nearest = [b for b in candidates if not any(_below(tiers[b], tiers[c]) for c in candidates)]
        if nearest:
            downgrade[tier] = nearest[0]
    return downgrade


def _below(lower: Sequence[Price], upper: Sequence[Price]) -> bool:
    return bool(lower and upper) and all(_cheaper(b, a) for b in lower for a in upper)


def _cheaper(b: Price, a: Price) -> bool:
    return b.input <= a.input and b.output <= a.output and (b.input, b.output) != (a.input, a.output)


class BudgetConfig(BudgetView, Strict):
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
        pattern=f"^(reject|tier:{NAME_PATTERN})$",
        description="'reject' (429) or 'tier:<name>': retry the request once on that tier",
    )
    day_start_hour: int = Field(default=0, ge=0, le=23, description="UTC hour at which the budget day starts")
    retention_days: int = Field(default=35, ge=1, le=3660, description="how long daily counters are kept")
    reservation_margin: float = Field(
        default=1.5, ge=1, le=100, description="headroom multiplied onto the input bound when reserving"
    )
    default_max_output_tokens: int = Field(
        default=4096,
        ge=1,
        le=MAX_TOKENS,
        description="output tokens reserved when neither the request (max_tokens) nor the model"
        " (max_output) bounds them",
    )
    image_tokens: int = Field(
        default=4000,
        ge=1,
        le=1_000_000,
        description="input tokens reserved per image part: an upper bound of the providers' per-image"
        " rule (see spend/reservation.py; raise it for models such as gpt-4o-mini)",
    )
    reservation_ttl_s: WindowSeconds = Field(
        default=900.0,
        ge=1,
        description="a reservation not settled within this time (its settle was lost, its process"
        " died) is charged in full; keep it above your longest request (Lambda stops at 900 s)",
    )
    on_store_error: Literal["allow", "reject"] = Field(
        default="allow",
        description="state store unreachable: let requests through uncounted, or fail them (503)",
    )
    shards: int = Field(
        default=1,
        ge=1,
        le=100,
        description="day items the spend counters and budgets are spread over (N× the write rate of"
        " one item; each shard enforces its share of a cap); change it at a day boundary",
    )

    region_shares: dict[Region, Share] = Field(
        default_factory=dict,
        description="several regions (docs/regions.md): each region's share of every cap above, summing"
        " to at most 1, so the regions together never pass a cap",
    )

    @field_validator("region_shares")
    @classmethod
    def _shares_fit_in_the_cap(cls, shares: dict[str, Decimal]) -> dict[str, Decimal]:
        total = sum(shares.values(), Decimal(0))
        if total > 1:
            raise ValueError(
                f"the regions' shares add up to {total}: at most 1, or the regions together pass the cap"
            )
        return shares


# --- limits: ------------------------------------------------------------------------------


class KeyRateLimit(Strict):
    """One router key's limits. An omitted limit inherits the top-level one."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    requests_per_minute: int | None = Field(
        default=None, ge=0, le=MAX_PER_MINUTE, validation_alias=AliasChoices("requests_per_minute", "rpm")
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=0, le=MAX_PER_MINUTE, validation_alias=AliasChoices("tokens_per_minute", "tpm")
    )


class RateLimitConfig(RateLimitView, KeyRateLimit):
    """Per router key, fixed one-minute windows. The top-level values apply to every key."""

    keys: dict[KeyId, KeyRateLimit] = Field(default_factory=dict)


# --- cache: -------------------------------------------------------------------------------


class CacheOverride(Strict):
    enabled: bool | None = None
    ttl_s: int | None = Field(default=None, ge=1, le=30 * 86400)


class CacheConfig(CacheView, Strict):
    """Exact-match response cache. Off unless `enabled: true`.

    Precedence: rules.<rule> over tiers.<tier> over the top level; the request header
    (`header: on|off`) is applied by the caller on top (see `spend.cache.header_opt_in`).
    `rules:` names rules of this file only: a request no rule decided (it named a tier or a
    model, or no rule matched) takes its tier's and the top-level settings.
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
    tiers: dict[Name, CacheOverride] = Field(default_factory=dict)
    rules: dict[Name, CacheOverride] = Field(default_factory=dict)

    @field_validator("header")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value
