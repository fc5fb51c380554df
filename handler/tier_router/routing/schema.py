"""TEMPORARY re-export: the rules-file schema moved to `tier_router.schema`. Kept only until
`replay.py` and `tests/replay` import from there; delete at integration."""

from tier_router.schema import (
    PRIORITIES,
    Condition,
    Model,
    Pattern,
    Price,
    Priority,
    Provider,
    Range,
    Rule,
    RulesFile,
    ValueTest,
)

__all__ = [
    "PRIORITIES",
    "Condition",
    "Model",
    "Pattern",
    "Price",
    "Priority",
    "Provider",
    "Range",
    "Rule",
    "RulesFile",
    "ValueTest",
]
