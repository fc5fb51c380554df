"""Embeddings attacked: what a provider's 200 must hold before it is passed on, and what the
hard cap reserves for inputs built to slip under it (token ids, multi-byte text, requests
racing for a cap with room for one), and the lifecycle of requests that end without an answer.
In process: respx answers the providers of `tests.embeddings.test_rules.doc` (tier `vec` =
[e-small on openai-a, e-large on openai-b]); the lifecycle through `tier-router serve` in front
of the session's fakes (`tests.embeddings.conftest`)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import respx
import yaml
from tier_router.router_keys import hash_key
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.embeddings.conftest import PRICE_B, line_of, start
from tests.embeddings.test_rules import doc
from tests.support.fake_providers import FakeProviders
from tests.support.router_app import Apps, app_settings
from tests.support.rules import BACKUP_BASE, KEYS, OPENAI_BASE

A_URL, B_URL = OPENAI_BASE + "/embeddings", BACKUP_BASE + "/embeddings"
TWO = ["first input", "second input"]


def answer(*vectors: Any, **extra: Any) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": "m", "usage": {"prompt_tokens": 4, "total_tokens": 4}}


GOOD = answer([0.1, 0.2], [0.3, 0.4])
MALFORMED = {
    "too few vectors": answer([0.1, 0.2]),
    "too many vectors": answer([0.1], [0.2], [0.3]),
    "an empty data list": {"object": "list", "data": [], "usage": {"prompt_tokens": 4}},
    "no data": {"object": "list", "usage": {"prompt_tokens": 4}},
    "a null vector": answer([0.1, 0.2], None),
    "an empty vector": answer([0.1, 0.2], []),
    "strings for numbers": answer([0.1, 0.2], ["0.3", "0.4"]),
    "a NaN": answer([0.1, 0.2], [float("nan"), 0.4]),
    "an index twice": {"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]},
    "an index out of range": {"data": [{"index": 0, "embedding": [0.1]}, {"index": 5, "embedding": [0.2]}]},
    "vectors of two lengths": answer([0.1, 0.2], [0.3]),
    "items that are not objects": {"data": [1, 2], "usage": {"prompt_tokens": 4}},
}


async def post(apps: Apps, body: dict[str, Any], rules: dict[str, Any] | None = None, **options: Any) -> Any:
    app = apps.app(rules or doc(), keys=KEYS, **options)
    client = apps.client(app)
    reply = await client.post("/v1/embeddings", json=body)
    await app.gateway.drain()
    return reply


@pytest.mark.anyio
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_200_without_one_vector_per_input_is_a_failed_attempt(apps: Apps, body: Any) -> None:
    """Broke: any 200 with a `data` list was passed on as the answer (one vector for two
    inputs, nulls, strings), settled and logged as a success; no fallback, no breaker."""
    with respx.mock(assert_all_called=False) as mock:
        bad = mock.post(A_URL).mock(return_value=httpx.Response(200, content=json.dumps(body).encode()))
        good = mock.post(B_URL).mock(return_value=httpx.Response(200, json=GOOD))
        reply = await post(apps, {"model": "auto", "input": TWO})
    assert reply.status_code == 200
    assert (bad.call_count, good.call_count) == (1, 1)
    assert reply.headers["x-router-model"] == "e-large"
    assert reply.headers["x-router-attempts"] == "2"
    assert reply.json() == GOOD


@pytest.mark.anyio
async def test_garbage_from_every_candidate_is_a_502_not_a_200(apps: Apps) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(A_URL).mock(return_value=httpx.Response(200, json=MALFORMED["too few vectors"]))
        mock.post(B_URL).mock(return_value=httpx.Response(200, json=MALFORMED["a null vector"]))
        reply = await post(apps, {"model": "auto", "input": TWO})
    assert reply.status_code == 502
    assert reply.json()["error"]["type"]
    assert "x-router-request-id" in reply.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("input_", "body"),
    [
        (TWO, answer(base64.b64encode(struct.pack("<2f", 0.1, 0.2)).decode(), "AAAAAAAAAAA=")),
        (TWO, {"data": [{"embedding": [0.1, 2]}, {"embedding": [0, 0.5]}]}),  # no index, ints
        ([[1, 2], [3]], answer([0.1], [0.2])),  # token ids: one vector per token-id array
        ([1, 2, 3], answer([0.1, 0.2])),  # one input given as token ids
        ("one string", {"data": [{"index": 0, "embedding": [0.5]}]}),  # no usage: still an answer
    ],
    ids=["base64", "no index", "token-id arrays", "one token-id input", "no usage"],
)
async def test_well_formed_answers_still_pass(apps: Apps, input_: Any, body: dict[str, Any]) -> None:
    """The check above is not stricter than OpenAI-compatible providers are."""
    with respx.mock(assert_all_called=False) as mock:
        mock.post(A_URL).mock(return_value=httpx.Response(200, json=body))
        reply = await post(apps, {"model": "auto", "input": input_})
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-router-model"] == "e-small"
    assert reply.json() == body


# -- the hard cap --------------------------------------------------------------------------------

E_LARGE_PRICE = 0.13
"""USD per 1M tokens of e-large, the dearest of tier `vec`: 0.13 micro-dollars a token."""


def capped(daily_usd: float) -> dict[str, Any]:
    return doc(budgets={"daily_usd": daily_usd, "reservation_margin": 1.0})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "input_",
    [
        [[7] * 4000],  # 4,000 token ids: 4,000 billed tokens, whatever their digits
        ["é" * 2000],  # 2,000 characters, 4,000 UTF-8 bytes: a byte-level tokenizer's worst case
        ["😀" * 1000],  # 1,000 characters, 4,000 bytes
    ],
    ids=["token ids", "two-byte characters", "four-byte characters"],
)
async def test_the_reservation_bounds_the_billed_tokens_not_the_characters(apps: Apps, input_: Any) -> None:
    """A cap of 3,000 tokens' worth at e-large's price: each input is 4,000 billable tokens at
    worst (fewer characters), so it must be refused before any provider is asked."""
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(A_URL).mock(return_value=httpx.Response(200, json=answer([0.1])))
        reply = await post(apps, {"model": "auto", "input": input_}, capped(3000 * E_LARGE_PRICE / 1e6))
    assert reply.status_code == 429, reply.text
    assert reply.json()["error"]["code"] == "budget_exceeded"
    assert route.call_count == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "store_kind", ["memory", "sqlite", pytest.param("dynamodb", marks=pytest.mark.integration)]
)
async def test_concurrent_requests_against_a_cap_with_room_for_one(
    apps: Apps, tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """Eight requests at once, each reserving (1,000 + 2) tokens at e-large's price, under a cap
    that holds one reservation and not two: one reaches a provider, seven are refused."""
    store: Any
    if store_kind == "memory":
        store = MemoryStore()
    elif store_kind == "sqlite":
        store = SQLiteStore(tmp_path / "state.db")
    else:
        from tier_router.store.dynamodb import DynamoDBStore

        request.getfixturevalue("aws_env")
        store = DynamoDBStore(
            request.getfixturevalue("table"), endpoint=request.getfixturevalue("moto").endpoint
        )
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=answer([0.1]))

    rules = capped(1500 * E_LARGE_PRICE / 1e6)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()  # the DynamoDB store's moto
        route = mock.post(A_URL).mock(side_effect=slow)
        app = apps.app(rules, keys=KEYS, store=store)
        client = apps.client(app)
        body = {"model": "auto", "input": "x" * 1000}
        sent = [asyncio.ensure_future(client.post("/v1/embeddings", json=body)) for _ in range(8)]
        for _, refused in zip(range(7), asyncio.as_completed(sent), strict=False):
            await refused  # seven answer while the one admitted waits on the provider
        release.set()
        replies = await asyncio.gather(*sent)
        await app.gateway.drain()
    await store.aclose()
    assert sorted(r.status_code for r in replies) == [200] + [429] * 7
    assert route.call_count == 1


# -- lifecycle, through `tier-router serve` (SQLite store, logging on) ---------------------------


def test_a_client_that_leaves_mid_attempt_is_charged_its_reservation(
    tmp_path: Path, fakes: FakeProviders
) -> None:
    """Broke: the client left while provider A was computing; the line had no attempts and the
    request was charged 0 — a caller could spend past the hard cap by hanging up on big
    requests, which the provider bills all the same. Now the attempt is logged `abandoned` and
    the request charged its reservation (the cost is unknown: the conservative choice)."""
    with start(tmp_path, fakes, budgets={"daily_usd": 100.0}) as router:
        fakes.a.control(mode="timeout", delay_s=30)
        headers = {"authorization": f"Bearer {router.key}"}
        with pytest.raises(httpx.TimeoutException):
            httpx.post(router.url + "/v1/embeddings", json={"model": "auto", "input": "leave"},
                       headers=headers, timeout=0.5)  # fmt: skip
        fakes.a.wait_for(lambda stats: stats["requests"] == 1)
        deadline = time.monotonic() + 10
        while not router.request_lines()[1:] and time.monotonic() < deadline:
            time.sleep(0.05)
        [line] = [r for r in router.request_lines() if r["path"] == "/v1/embeddings"]
        assert (line["outcome"], line["status"]) == ("client_gone", 499)
        assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [("emb-a", "abandoned")]
        reservation = math.ceil(math.ceil((len("leave") + 2) * 1.5) * PRICE_B)  # the dearest: emb-b
        assert line["cost_micro_usd"] == reservation
        assert line["cost_estimated"] is True
        assert fakes.b.requests == 0
        ledger = router.ledger()
        assert ledger.budget_spent == ledger.total == reservation


def test_every_failure_before_and_after_routing_is_one_line_with_a_request_id(
    tmp_path: Path, fakes: FakeProviders
) -> None:
    with start(tmp_path, fakes, budgets={"daily_usd": 100.0}) as router:
        fakes.a.control(mode="status", status=500)
        fakes.b.control(mode="status", status=500)
        headers = {"authorization": f"Bearer {router.key}"}
        sent = [
            ({"json": {"model": "auto", "input": "fails"}, "headers": headers}, 502, "failed"),
            ({"json": {"model": "auto", "input": []}, "headers": headers}, 400, "refused"),
            ({"content": b"{", "headers": headers}, 400, "refused"),
            ({"json": {"model": "auto", "input": "x"}}, 401, "refused"),
            ({"json": {"model": "chat", "input": "x"}, "headers": headers}, 400, "refused"),
        ]
        ids = []
        for options, status, outcome in sent:
            reply = httpx.post(router.url + "/v1/embeddings", **options)
            assert reply.status_code == status, reply.text
            assert "Traceback" not in reply.text
            ids.append((reply.headers["x-router-request-id"], status, outcome))
        for request_id, status, outcome in ids:
            line = line_of(router, request_id)
            assert (line["endpoint"], line["status"], line["outcome"]) == ("embeddings", status, outcome)
        ledger = router.ledger()
        assert ledger.budget_spent == ledger.budget_committed == 0  # nothing answered, nothing held


@pytest.mark.anyio
async def test_a_router_keys_daily_cap_holds_for_embeddings(apps: Apps, tmp_path: Path) -> None:
    """Key `capped` may spend 3,000 tokens' worth a day at e-large's price; `free` has no cap.
    A 4,000-token input is refused for the first before any provider is asked, served for the
    second, and the first key's spend stays under its cap."""
    secrets = {"capped": "trk-capped-0123456789abcdef", "free": "trk-free-0123456789abcdef"}
    cap = 3000 * E_LARGE_PRICE / 1e6
    records = [{"name": "capped", "sha256": hash_key(secrets["capped"]), "daily_usd": cap},
               {"name": "free", "sha256": hash_key(secrets["free"])}]  # fmt: skip
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": records}))
    settings = app_settings(keys_file=keys_file, require_auth=True)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(url__regex=r"https://(openai|backup)\.test/v1/embeddings").mock(
            side_effect=lambda _: httpx.Response(200, json=answer([0.1]))
        )
        app = apps.app(doc(budgets={"reservation_margin": 1.0}), keys=KEYS, settings=settings)
        client = apps.client(app)
        body = {"model": "auto", "input": [[7] * 4000]}
        refused = await client.post(
            "/v1/embeddings", json=body, headers={"authorization": "Bearer " + secrets["capped"]}
        )
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert route.call_count == 0
        small = await client.post("/v1/embeddings", json={"model": "auto", "input": "short"},
                                  headers={"authorization": "Bearer " + secrets["capped"]})  # fmt: skip
        assert small.status_code == 200, small.text
        served = await client.post(
            "/v1/embeddings", json=body, headers={"authorization": "Bearer " + secrets["free"]}
        )
        assert served.status_code == 200, served.text
        assert route.call_count == 2
        await app.gateway.drain()


@pytest.mark.anyio
async def test_models_retrieve_with_odd_ids(apps: Apps) -> None:
    """Names may hold `/`, `:`, `@` and `+` (the SDK percent-encodes them); anything else is a
    404 in OpenAI's shape, with a request id."""
    rules = doc()
    rules["models"]["openai/te-3@v1:large+"] = rules["models"].pop("e-large")
    rules["tiers"] = {**rules["tiers"], "vec": ["e-small", "openai/te-3@v1:large+"], "vec-large": ["e-small"]}
    app = apps.app(rules, keys=KEYS)
    http = apps.client(app)
    sdk = openai.AsyncOpenAI(base_url="http://router/v1", api_key="k" * 20, http_client=http, max_retries=0)
    found = await sdk.models.retrieve("openai/te-3@v1:large+")
    assert found.id == "openai/te-3@v1:large+"
    for odd in ["a/b", "../../etc/passwd", "é模型", "x" * 5000, "%ZZ", "e-small/", "e-large"]:
        with pytest.raises(openai.NotFoundError) as missing:
            await sdk.models.retrieve(odd)
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
        assert missing.value.response.headers["x-router-request-id"]
    reply = await http.get("/v1/models/" + "%00")
    assert reply.status_code == 404
    assert reply.json()["error"]["param"] == "model"
