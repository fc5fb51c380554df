"""The routing sections of the rules file: providers, models, tiers' rules, priority, breakers.

Shapes only: cross references (a tier naming an unknown model, a rule naming an unknown
tier) and regex compilation are checked by `routing.loader`, which turns every problem into
one precise `RulesError`.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tier_router.schema.common import (
    MAX_TIMEOUT_S,
    MAX_TOKENS,
    Name,
    PricePerMTok,
    Priority,
    Seconds,
    Strict,
    WindowSeconds,
)
from tier_router.schema.forms import ProviderView
from tier_router.schema.judging import RuleQuality
from tier_router.schema.quality import (
    STICKY_DEFAULT,
    CascadeSpec,
    StickySource,
    check_sticky,
    percent_to_buckets,
)


class Timeouts(Strict):
    """Seconds. `total` bounds a whole non-streamed attempt; streams use ttft/stall instead."""

    connect: Seconds = 5.0
    read: Seconds = 120.0
    total: Seconds = 300.0
    first_token: Seconds = Field(
        default=10.0,
        description="max wait for the first streamed content: a stuck non-reasoning model is replaced"
        " within it; give reasoning models more (per model: models.<name>.timeouts)",
    )
    stall: Seconds = Field(default=10.0, description="max gap between streamed chunks")


class HealthCheck(Strict):
    """How `tier-router probe` (and the scheduled Lambda probe) checks a provider."""

    enabled: bool = True
    model: Name | None = Field(
        default=None,
        description="a model of this provider (its name under models:): a 1-token completion on it "
        "instead of the default GET {base_url}/models",
    )
    timeout_s: Seconds = Field(default=10.0, description="the whole check, connect included")


class Retry(Strict):
    """Same-model retries: how often one model is asked again, within one request, before the
    next candidate is tried. Per provider (`providers.<name>.retry`), with a per-model override
    (`models.<name>.retry`: the fields it gives replace the provider's).

    Retried: a 429 whose `retry-after` / `retry-after-ms` is at most `max_wait_s` (after that
    wait), and a model's first 500/502/503 (after a jittered `backoff_s`, or its `retry-after`
    when that is longer and at most `max_wait_s`). Never retried: timeouts, connect errors,
    dropped connections, invalid answers, other statuses, a 429 without `retry-after` or with
    one longer than `max_wait_s` (the next candidate is tried at once)."""

    max_attempts: int = Field(
        default=2,
        ge=1,
        le=5,
        description="attempts on one model per request, the first included; 1: no retry",
    )
    max_wait_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="the longest retry-after waited on before the same model is retried",
    )
    backoff_s: float = Field(
        default=0.2, ge=0, le=10, description="wait before retrying a 5xx: uniformly 0.5x to 1.5x this"
    )


OPENAI_HOST = "api.openai.com"
"""Where `prompt_cache_key` is sent when a provider does not say (other servers may refuse it)."""


class Provider(ProviderView, Strict):
    kind: Literal["openai", "anthropic", "mock"]
    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable / secret that holds the key (never the key)",
    )
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = Field(default_factory=dict, description="extra static headers, no secrets")
    probe: HealthCheck = HealthCheck()
    retry: Retry = Retry()
    prompt_cache_key: bool | None = Field(
        default=None,
        description="send OpenAI's prompt_cache_key (tr-<conversation>) when the client sent none;"
        " unset: only to api.openai.com (other OpenAI-compatible servers may refuse unknown fields)",
    )
    _sends_prompt_cache_key: bool = PrivateAttr(default=False)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "mock://")):
            raise ValueError("must start with http://, https:// (or mock:// for the mock kind)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _key_needed(self) -> Provider:
        if self.kind != "mock" and self.api_key_env is None:
            raise ValueError("api_key_env is required: name the environment variable that holds the key")
        return self

    @model_validator(mode="after")
    def _prompt_cache_key(self) -> Provider:
        """Decided once, here: whether this provider's requests carry `prompt_cache_key`."""
        if self.kind == "anthropic" and self.prompt_cache_key:
            raise ValueError(
                "prompt_cache_key: the Anthropic API has no prompt_cache_key"
                " (mark its prompt cache with the prompt_cache: section)"
            )
        if self.prompt_cache_key is not None:
            self._sends_prompt_cache_key = self.prompt_cache_key
        else:
            host = urlsplit(self.base_url).hostname
            self._sends_prompt_cache_key = self.kind == "openai" and host == OPENAI_HOST
        return self


class Price(Strict):
    """USD per 1M tokens, as providers list them."""

    input: PricePerMTok
    output: PricePerMTok
    cached_input: PricePerMTok | None = None


ModelKind = Literal["chat", "embedding"]


class Model(Strict):
    provider: Name
    id: str = Field(min_length=1, description="the provider's model id")
    kind: ModelKind = Field(
        default="chat",
        description="chat (POST /v1/chat/completions) or embedding (POST /v1/embeddings; priced by"
        " `price.input` alone)",
    )
    price: Price
    context_window: int | None = Field(default=None, gt=0, le=MAX_TOKENS)
    max_output: int | None = Field(default=None, gt=0, le=MAX_TOKENS)
    retry: Retry | None = Field(
        default=None, description="overrides the fields it gives of the provider's retry"
    )
    timeouts: Timeouts | None = Field(
        default=None, description="overrides the fields it gives of the provider's timeouts"
    )

    @model_validator(mode="before")
    @classmethod
    def _embedding_price(cls, value: Any) -> Any:
        """An embedding model is priced per input token: `price: {input: X}` (its output price
        is 0; a written one is an error, not silently ignored)."""
        if not isinstance(value, dict) or value.get("kind") != "embedding":
            return value
        price = value.get("price")
        if isinstance(price, dict):
            extra = sorted(set(price) & {"output", "cached_input"})
            if extra:
                raise ValueError(
                    f"an embedding model is priced by input tokens only: remove price.{extra[0]}"
                )
            return {**value, "price": {**price, "output": 0}}
        return value


class Range(Strict):
    """Inclusive bounds; either side may be omitted."""

    min: int | None = Field(default=None, ge=0, le=MAX_TOKENS)
    max: int | None = Field(default=None, ge=0, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Pattern(Strict):
    pattern: str = Field(min_length=1)
    ignore_case: bool = False


class ValueTest(Strict):
    """Compare one string value: equal to one of several values, or match a regex."""

    equals: list[str] | None = Field(default=None, min_length=1)
    matches: str | None = Field(default=None, min_length=1)
    ignore_case: bool = False
    present: bool | None = None

    @field_validator("equals", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_test(self) -> ValueTest:
        given = [k for k in ("equals", "matches", "present") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of equals, matches, present")
        return self


class HeaderTest(ValueTest):
    name: str = Field(min_length=1)


class MetadataTest(ValueTest):
    key: str = Field(min_length=1)


class Condition(Strict):
    """One condition. Several keys in one mapping must *all* hold; nest all/any/not for more."""

    all: list[Condition] | None = Field(default=None, min_length=1)
    any: list[Condition] | None = Field(default=None, min_length=1)
    not_: Condition | None = Field(default=None, alias="not")

    last_user_matches: Pattern | None = None
    system_matches: Pattern | None = None
    any_text_matches: Pattern | None = None

    last_user_chars: Range | None = None
    last_user_tokens: Range | None = None
    conversation_chars: Range | None = None
    conversation_tokens: Range | None = None

    has_tools: bool | None = None
    json_response: bool | None = None
    has_images: bool | None = None
    message_count: Range | None = None
    max_tokens: Range | None = None

    header: HeaderTest | None = None
    metadata: MetadataTest | None = None
    user: ValueTest | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_empty_values(cls, value: object) -> object:
        """`has_tools:` with nothing after it is YAML null: an error, not a never-true test."""
        if value is None:
            raise ValueError("empty value: give a test, or remove the key")
        return value

    @field_validator("last_user_matches", "system_matches", "any_text_matches", mode="before")
    @classmethod
    def _bare_pattern(cls, value: object) -> object:
        """`last_user_matches: "regex"` is shorthand for `{pattern: "regex"}`."""
        return {"pattern": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _not_empty(self) -> Condition:
        if not self.model_fields_set:
            raise ValueError("empty condition: give at least one test")
        return self


class Rule(Strict):
    name: Name
    tier: Name
    when: Condition
    priority: Priority | None = Field(
        default=None, description="priority for requests that do not state their own"
    )
    description: str | None = None
    rollout: float | None = Field(
        default=None,
        description='"10%", "2.5%" or a number: the rule applies to that sticky share of the requests it'
        " matches; the rest go on to the next rules",
    )
    arm: str | None = Field(
        default=None,
        max_length=257,
        description="<experiment>/<arm>: the rule applies only to requests in that arm",
    )
    cascade: CascadeSpec | None = Field(
        default=None, description="replaces the tier's cascade for the requests this rule routes"
    )
    quality: RuleQuality | None = Field(
        default=None, description="this rule's own judging sample rate (and reference tier)"
    )
    sticky: bool | None = Field(
        default=None,
        description="false: this rule's requests follow the rule every turn, never a conversation's"
        " remembered model (default: `conversations.sticky`)",
    )

    @field_validator("arm")
    @classmethod
    def _experiment_and_arm(cls, value: str | None) -> str | None:
        if value is not None and ("/" not in value.strip("/") or value != value.strip()):
            raise ValueError(f"give <experiment>/<arm>, e.g. cheap-chat/control (got {value!r})")
        return value

    @field_validator("rollout", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        """`10%` → 10.0, checked: more than 0, at most 100, no finer than 0.01%."""
        if value is None:
            raise ValueError("empty value: give a percentage, or remove the key")
        percent_to_buckets(value)
        return float(value.strip().removesuffix("%")) if isinstance(value, str) else value


class PrioritySource(Strict):
    header: str | None = "x-priority"
    metadata_key: str | None = "priority"
    default: Priority = "normal"


class Routing(Strict):
    explicit_model_fallback: bool = Field(
        default=True,
        description="a request naming a model gets that model first, then the rest of its tier",
    )
    max_attempts: int = Field(
        default=4,
        ge=1,
        le=50,
        description="attempts per request after which no model is retried (each candidate still gets one)",
    )
    max_stream_recoveries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="times a text stream that fails after content is finished by the next candidate"
        " (mid-stream recovery); 0 turns it off: the stream ends with an error event",
    )
    deadline_s: WindowSeconds = Field(
        default=600.0,
        description="one deadline for reaching an answer across every attempt, retry and wait (a"
        " stream's, for its first content): no candidate is started, and no attempt runs, past it",
    )
    sticky: list[StickySource] = Field(
        default_factory=lambda: list(STICKY_DEFAULT),
        max_length=16,
        description="where a request's sticky id comes from (weighted splits, rollouts, experiments),"
        " first present wins: header:<name>, user, metadata:<key>, key (the router key's name);"
        " none present: the request is placed at random (not sticky)",
    )

    @field_validator("sticky")
    @classmethod
    def _sticky_sources(cls, value: list[str]) -> list[str]:
        return check_sticky(value)


MAX_BACKOFF = 10.0
"""A recovery period may grow tenfold per failed probe at most (it reaches recovery_max_s anyway)."""


class Breakers(Strict):
    """Circuit breakers per provider and per model, shared through the state store."""

    enabled: bool = True
    failure_threshold: int = Field(
        default=5,
        ge=1,
        le=1_000_000,  # a threshold never reached is a disabled breaker: say `enabled: false`
        description="failures within window_s that open a breaker",
    )
    window_s: WindowSeconds = Field(default=30.0, description="the rolling window failures are counted in")
    recovery_s: WindowSeconds = Field(
        default=5.0, description="how long a newly opened breaker skips its target before one probe"
    )
    recovery_backoff: float = Field(
        default=2.0, ge=1.0, le=MAX_BACKOFF, description="each failed probe multiplies the recovery by this"
    )
    recovery_max_s: WindowSeconds = Field(default=60.0, description="the longest recovery period")
    cache_ttl_s: float = Field(
        default=1.0, ge=0, le=MAX_TIMEOUT_S, description="how stale a process's view may be"
    )

    @model_validator(mode="after")
    def _recovery_bounds(self) -> Breakers:
        if self.recovery_max_s < self.recovery_s:
            raise ValueError("recovery_max_s must be at least recovery_s")
        return self
