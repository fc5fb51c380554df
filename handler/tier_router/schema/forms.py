"""The rules file's runtime forms: what the router reads at request time, without pydantic.

The validation models (`schema.routing`, `schema.spend`, ...) define the file's shape and
check it; their behaviour (properties and methods the router calls: `BudgetConfig.enabled`,
`CacheConfig.policy`, `TierSpec.names`, ...) lives here, in one view class per model, which
the model inherits. A compiled rules file (`routing.compiled`) is the validated models' data;
loading it builds `Form` objects carrying the same views, so the request path reads the same
attributes and calls the same code, and neither pydantic nor the models are imported.

`Form` answers the part of pydantic's API the router uses at run time: attribute access,
`model_fields_set`, `model_copy(update=...)`, `model_dump(...)`, equality and hashing by
value. Views hold no annotations (pydantic would take them for fields) and no state.
tests/coldstart holds the models and the views together (every model's behaviour is a view's,
every view is a model's).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from tier_router.schema.units import percent_to_buckets, usd_to_micro

if TYPE_CHECKING:
    from decimal import Decimal


class CachePolicy(NamedTuple):
    """What applies to one request after tier and rule overrides."""

    enabled: bool
    ttl_s: int


# --- the views: the models' behaviour ------------------------------------------------------


class RulesFileView:
    @property
    def tiers(self) -> dict[str, list[str]]:
        """Tier → its model names in the file's order (weights and cascades: `tier_specs`)."""
        return self._tiers


class TierSpecView:
    @property
    def listed(self) -> bool:
        """Written in the list form (error messages then say `tier 'x'[1]`, not `models[1]`)."""
        return self._listed

    @property
    def names(self) -> list[str]:
        """The models in the file's order (weighted and not)."""
        return [entry.model for entry in self.models]

    @property
    def weighted(self) -> bool:
        return any(entry.weight is not None for entry in self.models)


class ExperimentView:
    def buckets(self) -> dict[str, int]:
        """Arm → its share in buckets (of BUCKETS), in the file's order."""
        return {arm: percent_to_buckets(share) for arm, share in self.arms.items()}


class QualitySpecView:
    @property
    def judging(self) -> bool:
        """Whether any request may be judged (a rule may sample when the file's rate is 0)."""
        return self.reference is not None and self.judge is not None


class BudgetView:
    @property
    def enabled(self) -> bool:
        return self.daily_usd is not None or self.per_key_daily_usd is not None or bool(self.key_daily_usd)

    @property
    def cap_tier(self) -> str | None:
        """The tier named by `on_cap: tier:<name>`, else None."""
        return self.on_cap.partition(":")[2] if self.on_cap.startswith("tier:") else None

    @property
    def share(self) -> Decimal | int:
        """The share of each cap this process enforces (`for_region`); 1 = the whole cap."""
        return 1

    def for_region(self, region: str | None) -> BudgetView:
        """These budgets as `region` enforces them: every cap × its share in `region_shares`
        (rounded down to a micro-dollar, so the shares' caps add up to at most the cap). No
        shares, or no region (one process, locally): the caps as written."""
        if not self.region_shares or region is None:
            return self
        if region not in self.region_shares:
            raise ValueError(
                f"budgets.region_shares gives this region ({region}) no share of the caps:"
                f" add it (the shares of {', '.join(sorted(self.region_shares))} sum to at most 1)"
            )
        return RegionalBudget(self, self.region_shares[region])

    def _shared(self, micro: int) -> int:
        share = self.share
        return micro if share == 1 else int(micro * share)

    def daily_micro(self) -> int | None:
        return None if self.daily_usd is None else self._shared(usd_to_micro(self.daily_usd))

    def key_daily_micro(self, key_id: str | None) -> int | None:
        """The cap for one router key, or None when that key has none."""
        if key_id is None:
            return None
        usd = self.key_daily_usd.get(key_id, self.per_key_daily_usd)
        return None if usd is None else self._shared(usd_to_micro(usd))

    def unknown_tiers(self, tiers: Collection[str]) -> list[str]:
        problems = []
        for src, dst in (self.pacing.downgrade or {}).items():
            for name in (src, dst):
                if name not in tiers:
                    problems.append(f"budgets.pacing.downgrade: unknown tier {name!r}")
        if self.cap_tier is not None and self.cap_tier not in tiers:
            problems.append(f"budgets.on_cap: unknown tier {self.cap_tier!r}")
        return problems


class RegionalBudget(BudgetView):
    """A `budgets:` section as one region enforces it (`BudgetView.for_region`): the same
    fields, every cap × `share`. Works over a validated model and a compiled form alike."""

    def __init__(self, budgets: Any, share: Decimal) -> None:
        self.__dict__["_budgets"] = budgets
        self.__dict__["_region_share"] = share

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_budgets"], name)

    @property
    def share(self) -> Decimal:
        return self.__dict__["_region_share"]

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> RegionalBudget:
        """A copy with `update` applied that keeps this region's share (`SpendControls.apply_keys`)."""
        return RegionalBudget(self.__dict__["_budgets"].model_copy(update=update), self.share)


class RateLimitView:
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


class CacheView:
    def policy(self, tier: str | None, rule: str | None) -> CachePolicy:
        """`rule`: the name of the rule that chose the tier, None when no rule did."""
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
        return [f"cache.rules: unknown rule {r!r}" for r in self.rules if r not in rules]


class ProviderView:
    @property
    def sends_prompt_cache_key(self) -> bool:
        """Whether requests to this provider carry `prompt_cache_key` from the conversation
        (`prompt_cache_key:` as written; unset: only an `openai` provider at api.openai.com),
        decided when the file loads."""
        return self._sends_prompt_cache_key


class PromptCacheView:
    @property
    def used(self) -> bool:
        """Some tier or rule (or the top level) turns automatic breakpoints on."""
        overrides = (*self.tiers.values(), *self.rules.values())
        return self.auto or any(o.auto for o in overrides)

    def min_tokens_for(self, tier: str | None, rule: str | None) -> int | None:
        """The prefix size from which breakpoints are marked for a request of `tier` decided by
        `rule` (None when no rule did); None: automatic breakpoints are off for it."""
        auto, min_tokens = self.auto, self.min_tokens
        for override in (self.tiers.get(tier or ""), self.rules.get(rule or "")):
            if override is not None:
                if override.auto is not None:
                    auto = override.auto
                if override.min_tokens is not None:
                    min_tokens = override.min_tokens
        return min_tokens if auto else None

    def unknown_tiers(self, tiers: Collection[str]) -> list[str]:
        return [f"prompt_cache.tiers: unknown tier {t!r}" for t in self.tiers if t not in tiers]

    def unknown_rules(self, rules: Collection[str]) -> list[str]:
        return [f"prompt_cache.rules: unknown rule {r!r}" for r in self.rules if r not in rules]


VIEWS: dict[str, type] = {
    "RulesFile": RulesFileView,
    "TierSpec": TierSpecView,
    "Experiment": ExperimentView,
    "QualitySpec": QualitySpecView,
    "BudgetConfig": BudgetView,
    "RateLimitConfig": RateLimitView,
    "CacheConfig": CacheView,
    "PromptCacheConfig": PromptCacheView,
    "Provider": ProviderView,
}
"""Model class name → its view (models without behaviour have none)."""


# --- the runtime form ----------------------------------------------------------------------


class Form:
    """A validated model's data as a plain frozen object (see the module's docstring).

    `_fields`: the model's fields in declaration order; `_set`: those the file gave
    (`model_fields_set`); `_aliases`: field → the name the file writes (`not_` → `not`)."""

    _kind: str = "Form"
    _names: tuple[str, ...] = ()
    _aliases: Mapping[str, str] = {}

    def __init__(
        self, fields: Mapping[str, Any], fields_set: Iterable[str], private: Mapping[str, Any]
    ) -> None:
        state = self.__dict__
        state.update(fields)
        state.update(private)
        state["_set"] = frozenset(fields_set)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self._kind} is frozen: cannot set {name!r}")

    @property
    def model_fields_set(self) -> set[str]:
        return set(self.__dict__["_set"])

    def _values(self) -> tuple[Any, ...]:
        return tuple(self.__dict__[name] for name in self._names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Form) or other._kind != self._kind:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self._kind, self._values()))

    def __repr__(self) -> str:
        return f"{self._kind}({', '.join(f'{n}={self.__dict__[n]!r}' for n in self._names)})"

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Form:
        state = self.__dict__
        fields = {name: state[name] for name in self._names}
        private = {k: v for k, v in state.items() if k.startswith("_") and k not in fields and k != "_set"}
        fields.update(update or {})
        return type(self)(fields, state["_set"] | set(update or ()), private)

    def model_dump(
        self, *, exclude_unset: bool = False, exclude_none: bool = False, by_alias: bool = False
    ) -> dict[str, Any]:
        options = {"exclude_unset": exclude_unset, "exclude_none": exclude_none, "by_alias": by_alias}
        out = {}
        for name in self._names:
            value = self.__dict__[name]
            if (exclude_unset and name not in self.__dict__["_set"]) or (exclude_none and value is None):
                continue
            out[self._aliases.get(name, name) if by_alias else name] = dump(value, options)
        return out


def dump(value: Any, options: dict[str, Any]) -> Any:
    if isinstance(value, Form):
        return value.model_dump(**options)
    if isinstance(value, dict):
        return {k: dump(v, options) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(dump(v, options) for v in value)
    return value


_CLASSES: dict[str, type[Form]] = {}


def form_class(kind: str, names: tuple[str, ...], aliases: Mapping[str, str]) -> type[Form]:
    """The runtime class of model `kind` (its view first, so its behaviour is the model's)."""
    key = f"{kind}:{','.join(names)}"
    cls = _CLASSES.get(key)
    if cls is None:
        view = VIEWS.get(kind)
        bases = (view, Form) if view is not None else (Form,)
        cls = type(kind, bases, {"_kind": kind, "_names": names, "_aliases": dict(aliases)})
        _CLASSES[key] = cls
    return cls
