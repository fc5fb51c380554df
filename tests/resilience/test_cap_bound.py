"""Issue 13, item 1: the hard cap is not overrun by under-reservation.

An adversary sends concurrent requests whose billed cost the old estimate ignored — `n: 8`
(output × 8) and a 40 KB tool-call history (input the estimate never counted). The provider
bills honestly (prompt tokens = UTF-8 bytes of the billed text + 4 per message, completion =
max_tokens × n) and slowly, so reservations overlap. Committed spend never exceeds the cap.
Before the fix: `n: 8` committed several times the cap, the history case ~30×.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tier_router.spend.counters import day_key
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support import openai_bodies

pytestmark = pytest.mark.anyio

CONCURRENCY = 64
HISTORY = json.dumps({"rows": [f"row {i}: " + "x" * 30 for i in range(1000)]})  # ~40 KB of arguments


def utf8(text: str | None) -> int:
    return len((text or "").encode("utf-8"))


def honest_usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = 3
    for message in body["messages"]:
        prompt += 4 + utf8(message.get("content"))
        for call in message.get("tool_calls") or []:
            prompt += utf8(call["function"]["name"]) + utf8(call["function"]["arguments"])
    completion = body["max_tokens"] * body.get("n", 1)
    return openai_bodies.usage(prompt, completion)


def n8() -> dict[str, Any]:
    return openai_bodies.chat_request("Say hi", model="fast", n=8, max_tokens=200)


def tool_history() -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "export", "arguments": HISTORY}}
    return {
        "model": "fast",
        "max_tokens": 50,
        "messages": [
            {"role": "user", "content": "Export the table"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
            {"role": "user", "content": "Summarise it"},
        ],
    }


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
@pytest.mark.parametrize(
    ("request_body", "cap_usd"),
    [(n8, 0.05), (tool_history, 0.5)],
    ids=["n8", "40KB-tool-history"],
)
async def test_committed_spend_never_exceeds_the_cap(
    make_router,
    rules_dict,
    upstream: respx.MockRouter,
    urls,
    tmp_path: Path,
    store_kind,
    request_body,
    cap_usd,
) -> None:
    store = MemoryStore() if store_kind == "memory" else SQLiteStore(tmp_path / "state.db")
    cap = round(cap_usd * 1_000_000)
    calls = 0

    async def bill(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # hold every reservation while the others arrive
        body = json.loads(request.content)
        return httpx.Response(200, json=openai_bodies.completion(usage=honest_usage(body)))

    upstream.post(urls["primary"]).mock(side_effect=bill)
    rules = rules_dict(budgets={"daily_usd": cap_usd, "pacing": {"enabled": False}})
    rules["tiers"]["fast"] = ["primary"]
    router = make_router(rules=rules, store=store)

    responses = await asyncio.gather(
        *(router.post("/v1/chat/completions", json=request_body()) for _ in range(CONCURRENCY))
    )
    ok = [r for r in responses if r.status_code == 200]
    for r in responses:
        assert r.status_code in (200, 429), r.text
    assert ok, "nothing was served: the test does not exercise billing"
    await asyncio.sleep(0.2)  # settles run in tasks the client cannot cancel
    costs = [int(Decimal(r.headers["x-router-cost-usd"]) * 1_000_000) for r in ok]
    assert sum(costs) <= cap, f"served {len(ok)} requests for ${sum(costs) / 1e6} against a ${cap_usd} cap"
    assert len(ok) < CONCURRENCY, "the cap never refused anything: the test does not exercise it"
    item = await store.get(f"spend:{day_key(time.time())}")
    assert item is not None
    assert item["spent"] == sum(costs)
    assert item["spent"] <= item["committed"] <= cap
    assert calls == len(ok)


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        (
            "messages",
            [
                {
                    "role": "user",
                    "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}],
                }
            ],
            "messages",
        ),
        ("n", 0, "n"),
        ("n", "8", "n"),
    ],
)
async def test_a_cost_that_cannot_be_bounded_is_refused_under_a_cap(
    make_router, rules_dict, upstream: respx.MockRouter, urls, field, value, param
) -> None:
    primary = upstream.post(urls["primary"]).respond(200, json=openai_bodies.completion())
    router = make_router(rules=rules_dict(budgets={"daily_usd": 1}), store=MemoryStore())
    body = {**openai_bodies.chat_request(model="fast"), field: value}
    response = await router.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert primary.call_count == 0
