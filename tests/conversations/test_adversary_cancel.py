"""Adversary: the server cancels a request (shutdown, or an ASGI client going away) while the
turn waits on its conversation's memory read. The request still gets exactly one log line,
nothing is remembered for it (it was never answered), and the conversation's next turn is
placed by the memory that was there before."""

from __future__ import annotations

import asyncio
import json
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


class HeldReads(Wrapped):
    """`get` waits until `release` is set; `entered` is set when one is waiting."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.hold = False
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def before(self, name: str) -> None:
        if name == "get" and self.hold:
            self.entered.set()
            await self.release.wait()


async def test_a_turn_cancelled_during_its_memory_read_is_logged_once_and_remembers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = HeldReads(MemoryStore())
    settings = Settings(rules_path=tmp_path / "rules.yaml", log_requests=True)
    app = create_app(settings, rules=parse_rules(RULES), store=store)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    async with asgi_client(app) as client:
        first = await client.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
        assert first.headers["x-router-model"] == "steady"  # flaky failed: the failover is written
        messages += [first.json()["choices"][0]["message"], {"role": "user", "content": "more"}]
        store.hold = True
        pending = asyncio.create_task(
            client.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
        )
        await asyncio.wait_for(store.entered.wait(), 5)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        store.hold = False
        store.release.set()
        after = await client.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
    assert after.headers["x-router-model"] == "steady"
    assert after.headers["x-router-attempts"] == "1"  # still placed by the failover's memory
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    chats = [line for line in lines if line.get("event") == "request"]
    assert len(chats) == 3  # one line each, the cancelled one included
    assert chats[1]["outcome"] in ("cancelled", "client_gone")
    assert "moved_by" not in (chats[1].get("conversation") or {})
    assert chats[2]["conversation"]["stick"] == "kept"
