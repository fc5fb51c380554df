"""Fixtures for the resilience tests: a fault-injecting `Store` wrapper, a small rules file
(two OpenAI-compatible providers on `*.test` hosts, answered by the root conftest's respx
`upstream`), and the app driven in-process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tier_router.settings import Settings

from tests.support.router_app import Apps
from tests.support.rules import with_sections
from tests.support.stores import Faulty

PRIMARY_URL = "https://primary.test/v1/chat/completions"
BACKUP_URL = "https://backup.test/v1/chat/completions"

PROVIDER_KEYS: dict[str, str] = {
    "PRIMARY_KEY": "sk-primary-FAKEKEY-0123456789abcdef",
    "BACKUP_KEY": "sk-backup-FAKEKEY-fedcba9876543210",
}
ROUTER_KEY = "trk-resilience-ROUTERKEY-5f1e2d3c4b5a"

RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "prov-a": {"kind": "openai", "base_url": "https://primary.test/v1", "api_key_env": "PRIMARY_KEY"},
        "prov-b": {"kind": "openai", "base_url": "https://backup.test/v1", "api_key_env": "BACKUP_KEY"},
    },
    "models": {
        "primary": {"provider": "prov-a", "id": "gpt-a", "price": {"input": 1.0, "output": 4.0}},
        "secondary": {"provider": "prov-b", "id": "gpt-b", "price": {"input": 0.5, "output": 2.0}},
    },
    "tiers": {"fast": ["primary", "secondary"]},
    "default_tier": "fast",
}


@pytest.fixture
def provider_keys() -> dict[str, str]:
    return dict(PROVIDER_KEYS)


@pytest.fixture
def router_key() -> str:
    return ROUTER_KEY


@pytest.fixture
def urls() -> dict[str, str]:
    return {"primary": PRIMARY_URL, "backup": BACKUP_URL}


@pytest.fixture
def rules_dict() -> Callable[..., dict[str, Any]]:
    """`rules_dict(**sections)` → a fresh copy of RULES with extra top-level sections."""

    return functools.partial(with_sections, RULES)


@pytest.fixture
def faulty_store() -> Callable[..., Faulty]:
    """`faulty_store(mode="ok"|"down"|"slow", delay_s=0.3)`: see `tests.support.stores.Faulty`."""
    return Faulty


@pytest.fixture
def make_router(apps: Apps, rules_dict: Callable[..., dict[str, Any]]) -> Callable[..., httpx.AsyncClient]:
    """`make_router(rules=..., settings=..., store=..., keys=...)` → an httpx client talking to a
    new app in-process (the app is its `.app`); the app's upstream client is intercepted by respx."""

    def make(
        *,
        rules: dict[str, Any] | None = None,
        settings: Settings | None = None,
        store: Any = None,
        keys: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        app = apps.app(
            rules if rules is not None else rules_dict(),
            settings=settings,
            keys=PROVIDER_KEYS if keys is None else keys,
            store=store,
        )
        router = apps.client(app, timeout=20.0)
        router.app = app  # type: ignore[attr-defined]
        return router

    return make
