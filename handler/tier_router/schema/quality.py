"""The quality sections of the rules file: weighted tiers, cascades, experiments, rollouts.

    tiers:
      budget: [small, medium]                      # the list form: a plain chain
      standard:                                     # the mapping form
        models:
          - {model: deepseek-chat, weight: 90}      # weighted: the sticky pick goes first,
          - {model: small, weight: 10}              #   then the rest of the chain in order
          - medium                                  # unweighted: a fallback only
        cascade: {to: premium, on: [truncated, {min_length: 20}], stream: hold}
    experiments:
      cheap-chat: {arms: {control: 50, cascade: 50}}   # percent of sticky ids; sum <= 100
    rules:
      - {name: x, tier: budget, rollout: 10%, arm: cheap-chat/cascade, when: {...}}

Shapes only. Validator entries (`on:`, `validators:`) are kept as written and built by
`tier_router.validators` when the loader compiles the file; cross references (a cascade to
an unknown tier, an arm of an unknown experiment, cascade cycles) are checked by
`routing.loader`, which names the file, the tier or rule, and the field.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, model_validator

from tier_router.schema.common import Name, Strict
from tier_router.schema.forms import ExperimentView, TierSpecView
from tier_router.schema.units import percent_to_buckets

MAX_WEIGHT = 10_000


def _validator_entry(value: object) -> object:
    if (isinstance(value, str) and value) or (isinstance(value, dict) and len(value) == 1):
        return value
    raise ValueError("give a validator's name, or a one-key mapping {kind: options}")


ValidatorEntry = Annotated[Any, BeforeValidator(_validator_entry)]
"""A validator's name (a kind, or a `validators:` entry) or a one-key mapping {kind: options}.
Built by `tier_router.validators.build_one` at load (kept as written here: the kinds and their
options belong to the validators package)."""


class WeightedModel(Strict):
    """One entry of a tier's `models`: a bare model name (unweighted: a fallback only) or
    `{model: name, weight: 0..10000}` (a share of the tier's sticky split)."""

    model: Name
    weight: int | None = Field(
        default=None,
        ge=0,
        le=MAX_WEIGHT,
        description="share of the tier's traffic that gets this model first (relative to the other"
        " weights); omitted: a fallback only",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: object) -> object:
        return value if isinstance(value, dict) else {"model": value}


class CascadeSpec(Strict):
    """`cascade:` of a tier or a rule: an answer failing one of `on` is asked again of tier `to`."""

    to: Name
    on: list[ValidatorEntry] = Field(min_length=1, description="validators, checked in order")
    stream: Literal["pass", "hold"] = Field(
        default="pass",
        description="hold: a streamed answer is held back and validated before its first byte goes"
        " out; pass: streamed answers pass through unvalidated",
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: object) -> object:
        """YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean True: take it as `on`."""
        if isinstance(value, dict) and True in value and "on" not in value:
            value = {("on" if key is True else key): item for key, item in value.items()}
        return value


class TierSpec(TierSpecView, Strict):
    """A tier: the list form `[a, b]`, or the mapping form `{models: [...], cascade: {...}}`."""

    models: list[WeightedModel]
    cascade: CascadeSpec | None = None
    _listed: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _list_form(cls, value: Any, handler: Any) -> TierSpec:
        if isinstance(value, TierSpec):
            return value
        listed = isinstance(value, list)
        if not listed and not isinstance(value, dict):
            raise ValueError("give a list of models, or a mapping {models: [...], cascade: {...}}")
        tier = handler({"models": value} if listed else value)
        tier._listed = listed
        return tier  # type: ignore[no-any-return]


Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


class Experiment(ExperimentView, Strict):
    """`experiments.<name>`: sticky ids split into arms by percent; the rest is in no arm.
    Rules gate on an arm with `arm: <experiment>/<arm>`."""

    arms: dict[Name, Percent] = Field(min_length=1, description="arm → percent of sticky ids")
    description: str | None = None

    @model_validator(mode="after")
    def _shares(self) -> Experiment:
        total = sum(Decimal(repr(v)) for v in self.arms.values())
        if total > 100:
            raise ValueError(f"arms: the percents add up to {float(total):g}, more than 100")
        for arm, share in self.arms.items():
            try:
                percent_to_buckets(share)
            except ValueError as exc:
                raise ValueError(f"arms.{arm}: {exc}") from None
        return self


STICKY_DEFAULT = ["header:x-router-sticky-key", "user", "key"]
StickySource = Annotated[str, Field(min_length=1, max_length=256)]


def check_sticky(sources: list[str]) -> list[str]:
    """`routing.sticky`: "header:<name>" (lower-cased), "user", "metadata:<key>", "key"."""
    out: list[str] = []
    for i, source in enumerate(sources):
        kind, sep, name = source.partition(":")
        if kind in ("user", "key") and not sep:
            item = kind
        elif kind == "header" and sep and name.strip():
            item = f"header:{name.strip().lower()}"
        elif kind == "metadata" and sep and name:
            item = source
        else:
            raise ValueError(
                f"[{i}]: {source!r} is not a sticky source (give header:<name>, user, metadata:<key> or key)"
            )
        if item in out:
            raise ValueError(f"[{i}]: {item!r} is listed twice")
        out.append(item)
    return out
