"""The rules document most router tests route by, and the provider keys it reads.

Three providers: two OpenAI-compatible ones, `openai-a` and `openai-b`, and an Anthropic one,
`anthropic`. Three models, one on each (`primary`, `secondary`, `claude` unless renamed).
Tiers: `fast` = [primary, secondary] (the default), `smart` = [claude, secondary] (rule
`needs-thinking`: the last user message mentions "prove"), `claude-only` = [claude]; alias
`gpt-4o` → fast.

By default the providers live on fake hosts (`*.test`) that respx answers in-process
(`URLS`); tests on real sockets pass the URLs of the fakes they started.
"""

from __future__ import annotations

import copy
from typing import Any

KEYS: dict[str, str] = {
    "OPENAI_KEY": "sk-test-openai-SECRET123",
    "BACKUP_KEY": "sk-test-backup-SECRET456",
    "ANTHROPIC_KEY": "sk-ant-test-SECRET789",
}
"""The provider keys (by environment variable name) the providers read."""

OPENAI_BASE = "https://openai.test/v1"
BACKUP_BASE = "https://backup.test/v1"
ANTHROPIC_BASE = "https://anthropic.test"
URLS: dict[str, str] = {
    "openai": OPENAI_BASE + "/chat/completions",
    "backup": BACKUP_BASE + "/chat/completions",
    "anthropic": ANTHROPIC_BASE + "/v1/messages",
}
"""Where the router sends each provider's requests, with the default bases."""


def three_providers(
    openai_base: str = OPENAI_BASE,
    backup_base: str = BACKUP_BASE,
    anthropic_base: str = ANTHROPIC_BASE,
    *,
    models: tuple[str, str, str] = ("primary", "secondary", "claude"),
    timeouts: dict[str, float] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A fresh rules document (see the module doc): the providers at those bases, the models
    named `models`, every provider with `timeouts` (when given), extra top-level `sections`."""
    a, b, claude = models

    def provider(kind: str, base_url: str, key_env: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": kind, "base_url": base_url, "api_key_env": key_env}
        if timeouts:
            spec["timeouts"] = dict(timeouts)
        return spec

    rules: dict[str, Any] = {
        "version": 1,
        "providers": {
            "openai-a": provider("openai", openai_base, "OPENAI_KEY"),
            "openai-b": provider("openai", backup_base, "BACKUP_KEY"),
            "anthropic": provider("anthropic", anthropic_base, "ANTHROPIC_KEY"),
        },
        "models": {
            a: {"provider": "openai-a", "id": "gpt-a-2025", "price": {"input": 1.0, "output": 4.0}},
            b: {"provider": "openai-b", "id": "gpt-b-mini", "price": {"input": 0.2, "output": 0.8}},
            claude: {
                "provider": "anthropic",
                "id": "claude-test-1",
                "price": {"input": 3.0, "output": 15.0},
                "max_output": 2048,
            },
        },
        "tiers": {"fast": [a, b], "smart": [claude, b], "claude-only": [claude]},
        "default_tier": "fast",
        "aliases": {"gpt-4o": "fast"},
        "rules": [
            {
                "name": "needs-thinking",
                "tier": "smart",
                "when": {"last_user_matches": {"pattern": "prove", "ignore_case": True}},
            }
        ],
    }
    return with_sections(rules, **sections)


def with_sections(rules: dict[str, Any], **sections: Any) -> dict[str, Any]:
    """A deep copy of `rules` with those top-level sections set (replaced when present)."""
    out = copy.deepcopy(rules)
    out.update(copy.deepcopy(sections))
    return out
