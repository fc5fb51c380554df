"""Embeddings end to end: `tier-router serve` (the real server, SQLite store) in front of the
session's fake providers (the root conftest's `fakes`: fake A and fake B answer
`POST .../embeddings` with deterministic unit vectors), driven by the real `openai` SDK.

The rules: embedding tier `vectors` = [emb-a (fake A), emb-b (fake B)], the `embeddings:`
section's default; chat tier `chat` = [chat-a (fake A)], the file's default. No same-model
retries, so one failed request is one failed attempt.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.clients import sync_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_process import Router, running_router

KEY_ENV = "FAKE_KEY"
ROUTER_KEY = "tr-embeddings-e2e-key-0001"
PRICE_A, PRICE_B = 100.0, 300.0
"""USD per 1M input tokens = micro-dollars per token: emb-b is the dearer."""
TIMEOUTS = {"connect": 1.0, "read": 3.0, "total": 3.0}


def embedding(provider: str, model_id: str, price: float) -> dict[str, Any]:
    return {"provider": provider, "id": model_id, "kind": "embedding", "price": {"input": price}}


def rules_doc(a_url: str, b_url: str, **sections: Any) -> dict[str, Any]:
    def provider(url: str) -> dict[str, Any]:
        return {
            "kind": "openai",
            "base_url": url + "/v1",
            "api_key_env": KEY_ENV,
            "timeouts": TIMEOUTS,
            "retry": {"max_attempts": 1},
        }

    doc: dict[str, Any] = {
        "version": 1,
        "providers": {"provider-a": provider(a_url), "provider-b": provider(b_url)},
        "models": {
            "chat-a": {"provider": "provider-a", "id": "gpt-a", "price": {"input": 1.0, "output": 2.0}},
            "emb-a": embedding("provider-a", "embed-a", PRICE_A),
            "emb-b": embedding("provider-b", "embed-b", PRICE_B),
        },
        "tiers": {"chat": ["chat-a"], "vectors": ["emb-a", "emb-b"]},
        "default_tier": "chat",
        "embeddings": {"default_tier": "vectors"},
    }
    for name, value in sections.items():
        doc[name] = copy.deepcopy(value)
    return doc


def start(tmp: Path, fakes: FakeProviders, **sections: Any) -> Any:
    """A `running_router` context over the fakes, on a SQLite store in `tmp`."""
    return running_router(
        tmp,
        rules_doc(fakes.a.url, fakes.b.url, **sections),
        key=ROUTER_KEY,
        store_url=f"sqlite:///{tmp / 'state.db'}",
        env={KEY_ENV: "sk-fake-embeddings-0123456789"},
    )


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, _fake_providers: FakeProviders) -> Iterator[Router]:
    """One router for the module's tests (its breakers stay closed: no test fails five times)."""
    with start(tmp_path_factory.mktemp("embeddings"), _fake_providers) as running:
        yield running


@pytest.fixture
def client(router: Router) -> openai.OpenAI:
    return sync_client(router.url, router.key)


def line_of(router: Router, request_id: str) -> dict[str, Any]:
    """The one access-log line of `request_id` (waits for it: lines may be written after the answer)."""
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in router.request_lines() if r.get("request_id") == request_id]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, f"{len(found)} lines for {request_id}"
            return found[0]
        time.sleep(0.02)
