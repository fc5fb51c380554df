"""Adversary: `background_settle` (the default under `tier-router serve`) answers before the
settle runs, and the store is slow: a tool loop's next turn arrives while the last turn's
memory write is still waiting. The next turn is placed by this process's own last turn (`note`),
not by the store's older memory; the write lands afterwards and agrees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore

from tests.conversations.turns import FLAKY_THEN_STEADY
from tests.support.router_app import asgi_client
from tests.support.stores import Wrapped

pytestmark = pytest.mark.anyio
RULES = FLAKY_THEN_STEADY


class HeldPuts(Wrapped):
    """Conversation writes wait until `release` is set; `puts` counts those that landed."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.release = asyncio.Event()
        self.waiting = 0
        self.puts: list[dict[str, Any]] = []

    async def put(self, key: str, value: Any, **options: Any) -> None:
        if key.startswith("conv:"):
            self.waiting += 1
            await self.release.wait()
            self.puts.append(dict(value))
        await super().put(key, value, **options)


async def test_the_next_turn_is_placed_by_this_process_before_the_write_lands(tmp_path: Path) -> None:
    store = HeldPuts(MemoryStore())
    settings = Settings(rules_path=tmp_path / "rules.yaml", log_requests=False, background_settle=True)
    app = create_app(settings, rules=parse_rules(RULES), store=store)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    models = []
    async with asgi_client(app) as client:
        for text in ("step 2", "step 3", "step 4"):
            response = await client.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
            models.append((response.headers["x-router-model"], response.headers["x-router-attempts"]))
            messages += [response.json()["choices"][0]["message"], {"role": "user", "content": text}]
            await asyncio.sleep(0)
        assert store.waiting >= 1  # a failover's write is still waiting ...
        assert store.puts == []  # ... nothing has landed
        store.release.set()
        await app.gateway.drain()
    assert models[0][0] == "steady"  # flaky failed (retried, then failed over): moved to steady
    assert models[0][1] != "1"
    assert models[1:] == [("steady", "1"), ("steady", "1")]  # placed there before the write landed
    assert store.puts  # the move landed, and every write (a turn that read the store before the
    assert {put["model"] for put in store.puts} == {"steady"}  # move landed writes again) agrees
