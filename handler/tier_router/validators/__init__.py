"""Response validators and the cascade that acts on them (see `base`)."""

from tier_router.validators.base import Ask, Cascade, Choice, Failure, Reply, ToolCall, Validator, validate
from tier_router.validators.registry import (
    KINDS,
    ValidatorConfigError,
    build_named,
    build_one,
    build_validators,
)

__all__ = [
    "KINDS",
    "Ask",
    "Cascade",
    "Choice",
    "Failure",
    "Reply",
    "ToolCall",
    "Validator",
    "ValidatorConfigError",
    "build_named",
    "build_one",
    "build_validators",
    "validate",
]
