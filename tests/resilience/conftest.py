"""Shared fixtures for the resilience tests: a fault-injecting `Store` wrapper, a small rules
file, and the app driven in-process with every provider mocked by respx.

Helpers are fixtures (or attributes of what fixtures return), never imports: under
`--import-mode=importlib` the test modules must not depend on how pytest names this package.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tier_router.app import create_app
from tier_router.provider_keys import KeySource
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.base import Scalar, StoreUnavailable, Value
from tier_router.store.memory import MemoryStore

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


class FaultyStore:
    """A `Store` that delegates to a `MemoryStore`, unless told to misbehave.

    `mode`: "ok" | "down" (every call raises `StoreUnavailable`) | "slow" (every call first
    sleeps `delay_s`). `calls` counts calls by method name.
    """

    def __init__(self, mode: str = "ok", delay_s: float = 0.3) -> None:
        self.inner = MemoryStore()
        self.mode = mode
        self.delay_s = delay_s
        self.calls: Counter[str] = Counter()

    async def _gate(self, name: str) -> None:
        self.calls[name] += 1
        if self.mode == "down":
            raise StoreUnavailable(f"injected outage ({name})")
        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        await self._gate("get_many")
        return await self.inner.get_many(keys)

    async def get(self, key: str) -> Value | None:
        await self._gate("get")
        return await self.inner.get(key)

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        await self._gate("put")
        await self.inner.put(key, value, expires_at=expires_at)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        await self._gate("add")
        return await self.inner.add(key, deltas, expires_at=expires_at, limits=limits)

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        await self._gate("put_if")
        return await self.inner.put_if(key, value, expected=expected, expires_at=expires_at)

    async def delete(self, key: str) -> None:
        await self._gate("delete")
        await self.inner.delete(key)

    async def ping(self) -> None:
        await self._gate("ping")
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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

    def build(**sections: Any) -> dict[str, Any]:
        raw = copy.deepcopy(RULES)
        raw.update(copy.deepcopy(sections))
        return raw

    return build


@pytest.fixture
def faulty_store() -> Callable[..., FaultyStore]:
    return FaultyStore


@pytest.fixture
async def make_router(
    anyio_backend: str, rules_dict: Callable[..., dict[str, Any]]
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """`make_router(rules=..., settings=..., store=..., keys=...)` → an httpx client talking to a
    new app in-process; the app's upstream client is intercepted by respx."""
    opened: list[httpx.AsyncClient] = []

    def make(
        *,
        rules: dict[str, Any] | None = None,
        settings: Settings | None = None,
        store: Any = None,
        keys: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        upstream_client = httpx.AsyncClient()
        app = create_app(
            settings or Settings(rules_path=Path("resilience-unused.yaml")),
            rules=parse_rules(rules if rules is not None else rules_dict(), "resilience-rules.yaml"),
            client=upstream_client,
            keys=KeySource(dict(PROVIDER_KEYS) if keys is None else keys),
            store=store,
        )
        router = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://router", timeout=20.0
        )
        router.app = app  # type: ignore[attr-defined]
        opened.extend([upstream_client, router])
        return router

    yield make
    for client in opened:
        await client.aclose()


@pytest.fixture
def upstream() -> Iterator[respx.MockRouter]:
    """Every provider, mocked. A request to any unmocked URL fails (respx raises)."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@pytest.fixture
def chat() -> Callable[..., dict[str, Any]]:
    def build(text: str = "Say hi", model: str = "auto", **fields: Any) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": text}], **fields}

    return build


@pytest.fixture
def completion() -> Callable[..., dict[str, Any]]:
    def build(text: str = "Hello there", model: str = "gpt-a", **fields: Any) -> dict[str, Any]:
        return {
            "id": "chatcmpl-resilience",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
            **fields,
        }

    return build
