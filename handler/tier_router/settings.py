"""Settings from the environment, read once at start-up (never per request)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RULES = Path("rules/router.yaml")
PACKAGED_RULES = Path(__file__).resolve().parent.parent / "rules" / "router.yaml"


def default_rules_path() -> Path:
    """`TIER_ROUTER_RULES`, else `rules/router.yaml` in the working directory, else the packaged one."""
    configured = os.environ.get("TIER_ROUTER_RULES")
    if configured:
        return Path(configured)
    if DEFAULT_RULES.exists():
        return DEFAULT_RULES
    return PACKAGED_RULES


@dataclass(frozen=True)
class Settings:
    rules_path: Path

    @classmethod
    def from_env(cls) -> Settings:
        return cls(rules_path=default_rules_path())
