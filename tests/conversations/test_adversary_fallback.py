"""Adversary: stickiness must not cost a conversation its fallback. A client once named the
single-model tier `solo` (its memory: `solo`, model `flaky`); its later `auto` turns go by the
rules to tier `main` = [flaky, steady], whose first model is the very model it remembers. The
provider of `flaky` then goes down. The rules alone answer from `steady`; kept on `flaky`, the
turn must keep the rules' fallback too, not be moved to `solo`'s one-model chain and fail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tier_router.app import create_app
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import Memory, Move, Policy, Stick, follow
from tier_router.settings import Settings
from tier_router.store.memory import MemoryStore

from tests.support.router_app import asgi_client
from tests.support.rules import three_providers

pytestmark = pytest.mark.anyio


def rules(flaky_url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {
            "ok": {"kind": "mock", "base_url": "mock://ok"},
            "p": {"kind": "mock", "base_url": flaky_url},
        },
        "models": {
            "flaky": {"provider": "p", "id": "mock-flaky", "price": {"input": 1.0, "output": 4.0}},
            "steady": {"provider": "ok", "id": "mock-steady", "price": {"input": 2.0, "output": 8.0}},
        },
        "tiers": {"main": ["flaky", "steady"], "solo": ["flaky"]},
        "default_tier": "main",
    }


async def test_a_kept_model_keeps_the_rules_fallback_when_its_provider_goes_down(tmp_path: Path) -> None:
    store = MemoryStore()
    settings = Settings(rules_path=tmp_path / "rules.yaml", log_requests=False)
    up = create_app(settings, rules=parse_rules(rules("mock://p")), store=store)
    down = create_app(settings, rules=parse_rules(rules("mock://p?fail_rate=1")), store=store)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    async with asgi_client(up) as before, asgi_client(down) as after:
        for model in ("auto", "solo"):  # the second turn names `solo`: the memory is (solo, flaky)
            response = await before.post("/v1/chat/completions", json={"model": model, "messages": messages})
            assert response.headers["x-router-model"] == "flaky"
            messages += [response.json()["choices"][0]["message"], {"role": "user", "content": "more"}]
        response = await after.post("/v1/chat/completions", json={"model": "auto", "messages": messages})
    assert response.status_code == 200, response.text
    assert response.headers["x-router-model"] == "steady"  # the rules' fallback answered
    assert response.headers["x-router-tier"] == "main"


def test_follow_keeps_the_model_in_the_rules_tier_when_that_tier_holds_it() -> None:
    """The pure policy: memory (claude-only, claude), the rules' tier smart = [claude, secondary]:
    kept on claude in `smart`, secondary its fallback. An escalation's memory still goes back
    to its tier (that tier's cascade, not the rules' cheaper one, applies)."""
    r = parse_rules(three_providers(), "test-rules.yaml")
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
    }
    decision = r.decide(
        parse_chat({**body, "messages": [*body["messages"], {"role": "user", "content": "prove it"}]})
    )
    assert decision.tier == "smart"
    now = 1_800_000_000.0
    kept = follow(
        r, Policy.of(r), decision, "c", Memory("claude-only", "claude", now - 5, moved_by=Move.CLIENT), now
    )
    assert (kept.conversation.stick, kept.tier) == (Stick.KEPT, "smart")
    assert [route.name for route in kept.candidates] == ["claude", "secondary"]
    assert "conversation kept on claude" in kept.why
    up = follow(
        r,
        Policy.of(r),
        decision,
        "c",
        Memory("claude-only", "claude", now - 5, moved_by=Move.ESCALATION),
        now,
    )
    assert (up.conversation.stick, up.tier) == (Stick.KEPT, "claude-only")
