"""Issue 16, feedback: what needs the store under the test's hand — the router app in this process
on a store whose clock the test moves (the feedback window), or that fails on cue (503, and a
claim given back when the count could not be written); and the feedback line's metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from tier_router.quality.facts import Fact, fact_key
from tier_router.store.base import Store
from tier_router.store.memory import MemoryStore

from tests.support.clock import FakeClock
from tests.support.openai_bodies import chat_request, completion
from tests.support.router_app import Apps, app_settings
from tests.support.rules import KEYS, URLS, three_providers
from tests.support.stores import Failing

pytestmark = pytest.mark.anyio
DAY_S = 86_400
ROUTER_KEY = "rk-feedback-app-0000001"


def rules(enabled: bool = True, window_days: int = 2) -> dict[str, Any]:
    return three_providers(quality={"feedback": {"enabled": enabled, "window_days": window_days}})


@pytest.fixture
def answers(upstream: respx.MockRouter) -> respx.MockRouter:
    upstream.post(URLS["openai"]).mock(return_value=httpx.Response(200, json=completion("fine")))
    return upstream


Make = Callable[..., tuple[httpx.AsyncClient, Any]]


@pytest.fixture
def router(apps: Apps, clock: FakeClock, answers: respx.MockRouter) -> Make:
    """`router(store, rules=..., **settings)`: the app on `store`, its facts on `clock`."""

    def make(
        store: Store, rules: dict[str, Any] | None = None, **settings: Any
    ) -> tuple[httpx.AsyncClient, Any]:
        options = {"api_keys": (f"team={ROUTER_KEY}",), "store_url": "memory://", **settings}
        app = apps.app(
            rules or globals()["rules"](), settings=app_settings(**options), keys=KEYS, store=store
        )
        gateway = app.state.gateway
        if gateway.quality.facts is not None:
            gateway.quality.facts.clock = clock
        headers = {"authorization": f"Bearer {ROUTER_KEY}"} if options["api_keys"] else {}
        return apps.client(app, headers=headers), gateway

    return make


async def answered(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/chat/completions", json=chat_request())
    assert response.status_code == 200, response.text
    return response.headers["x-router-request-id"]


async def feedback(client: httpx.AsyncClient, request_id: str, score: float = 1) -> httpx.Response:
    return await client.post("/v1/feedback", json={"request_id": request_id, "score": score})


async def test_feedback_is_taken_for_window_days_and_not_after(router: Make, clock: FakeClock) -> None:
    client, _ = router(MemoryStore(clock=clock), rules(window_days=2))
    early, late = await answered(client), await answered(client)

    clock.advance(2 * DAY_S - 60)
    assert (await feedback(client, early)).status_code == 200
    clock.advance(120)
    response = await feedback(client, late)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "request_not_found"


async def test_an_unreachable_store_is_503_and_takes_nothing(router: Make, clock: FakeClock) -> None:
    store = Failing(MemoryStore(clock=clock), down=False)
    client, _ = router(store)
    request_id = await answered(client)

    store.down = True
    response = await feedback(client, request_id)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"

    store.down = False
    assert (await feedback(client, request_id)).status_code == 200


async def test_a_claim_whose_count_failed_is_given_back(router: Make, clock: FakeClock) -> None:
    inner = MemoryStore(clock=clock)
    store = Failing(inner, down=False)
    client, _ = router(store)
    request_id = await answered(client)
    store.fail_adds = {store.adds + 2}  # the claim is the feedback's first add, the count its second

    failed = await feedback(client, request_id, 0.3)
    assert failed.status_code == 503
    assert (await inner.get(fact_key(request_id)) or {}).get("open") == 1  # open again

    assert (await feedback(client, request_id, 0.3)).status_code == 200
    assert (await feedback(client, request_id, 0.3)).status_code == 409


async def test_a_router_without_keys_matches_facts_without_a_key(router: Make, clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    client, _ = router(store, api_keys=())
    request_id = await answered(client)
    assert await store.get(fact_key(request_id)) == {
        "tier": "fast",
        "rule": "default",
        "model": "primary",
        "open": 1,
    }
    await store.put(fact_key("keyed"), Fact(key="team", tier="fast").item(), expires_at=clock() + DAY_S)

    assert (await feedback(client, request_id)).status_code == 200
    response = await feedback(client, "keyed")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "request_not_found"


async def test_off_nothing_is_kept_and_feedback_is_404(router: Make, clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    client, gateway = router(store, rules(enabled=False))
    request_id = await answered(client)

    response = await feedback(client, request_id)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "feedback_disabled"
    assert gateway.lifecycle.quality is None  # no work per request at all
    assert await store.get(fact_key(request_id)) is None


async def test_the_feedback_line_carries_no_request_metrics(
    router: Make, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    client, _ = router(MemoryStore(clock=clock), emf_metrics=True)
    request_id = await answered(client)
    assert (await feedback(client, request_id, 0.7)).status_code == 200

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (chat_line,) = [r for r in lines if r.get("request_id") == request_id and r.get("event") == "request"]
    (feedback_line,) = [r for r in lines if r.get("type") == "feedback"]
    assert "_aws" in chat_line
    assert chat_line["Requests"] == 1
    assert "_aws" not in feedback_line
    assert "Requests" not in feedback_line
    assert feedback_line["score"] == 0.7


async def test_an_answer_from_the_cache_can_be_scored(router: Make, clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    cached = three_providers(quality={"feedback": {"enabled": True}}, cache={"enabled": True, "scope": "key"})
    client, _ = router(store, cached)
    body = chat_request("Name the capital of France.", temperature=0)
    first = await client.post("/v1/chat/completions", json=body)
    second = await client.post("/v1/chat/completions", json=body)
    assert second.headers.get("x-router-cache") == "hit", second.headers
    request_id = second.headers["x-router-request-id"]

    assert await store.get(fact_key(request_id)) == {
        "key": "team",
        "tier": "fast",
        "rule": "default",
        "model": "primary",
        "open": 1,
    }
    assert (await feedback(client, request_id)).status_code == 200
    assert first.status_code == 200
