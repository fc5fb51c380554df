"""The demo's `embed` tier on the mock provider (in process), explain for embeddings, and the
log line's `endpoint`, which replay leaves alone."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tier_router.app import create_app
from tier_router.replay import replay
from tier_router.request_line import RequestLine
from tier_router.router_keys import hash_key
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings

from tests.support.rules import three_providers

DEMO = Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(rules_path=DEMO, store_url="memory://", require_auth=False)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        yield client


async def embed(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/embeddings", json={"model": "auto", **body})


@pytest.mark.anyio
async def test_the_mock_answers_deterministic_unit_vectors(demo: httpx.AsyncClient) -> None:
    first = await embed(demo, input=["same text", "other text"])
    again = await embed(demo, input="same text")
    assert first.status_code == again.status_code == 200
    assert first.headers["x-router-tier"] == "embed"
    assert first.headers["x-router-model"] == "embed-small"
    vectors = [d["embedding"] for d in first.json()["data"]]
    assert vectors[0] == again.json()["data"][0]["embedding"]  # the same input, the same vector
    assert vectors[0] != vectors[1]
    assert all(len(v) == 256 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-9 for v in vectors)
    usage = first.json()["usage"]
    assert usage == {"prompt_tokens": 6, "total_tokens": 6}  # 9 and 10 characters: 3 tokens each
    assert first.headers["x-router-cost-usd"] == "0.000001"  # 6 tokens at $0.02 per 1M, rounded up


@pytest.mark.anyio
async def test_the_mock_honours_dimensions_base64_and_the_model(demo: httpx.AsyncClient) -> None:
    small = await embed(demo, input="x", dimensions=3, encoding_format="base64")
    large = await embed(demo, model="embed-large", input="x", dimensions=3, encoding_format="float")
    assert large.headers["x-router-model"] == "embed-large"
    packed = small.json()["data"][0]["embedding"]
    assert len(struct.unpack("<3f", base64.b64decode(packed))) == 3
    assert len(large.json()["data"][0]["embedding"]) == 3
    floats = await embed(demo, input="x", dimensions=3, encoding_format="float")
    decoded = struct.unpack("<3f", base64.b64decode(packed))
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, floats.json()["data"][0]["embedding"], strict=True))
    assert floats.json()["data"][0]["embedding"] != large.json()["data"][0]["embedding"]  # per model


@pytest.mark.anyio
async def test_explain_routes_an_embeddings_body(demo: httpx.AsyncClient) -> None:
    explained = await demo.post("/v1/route/explain", json={"model": "auto", "input": "hello"})
    assert explained.status_code == 200
    data = explained.json()
    assert (data["tier"], data["rule"]) == ("embed", "default")
    assert [entry["model"] for entry in data["chain"]] == ["embed-small", "embed-large"]
    wrong = await demo.post("/v1/route/explain", json={"model": "premium", "input": "hello"})
    assert wrong.status_code == 400


def test_replay_leaves_embedding_lines_alone(tmp_path: Path) -> None:
    line = {"event": "request", "endpoint": "embeddings", "outcome": "ok", "status": 200, "tier": "fast",
            "rule": "default", "model": "primary", "cost_micro_usd": 500, "prompt_tokens": 5}  # fmt: skip
    assert RequestLine.read(line).endpoint == "embeddings"  # type: ignore[union-attr]
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(line) + "\n", encoding="utf-8")
    rules = parse_rules(three_providers(), "rules.yaml")
    report = replay(log, rules, progress=False, rules_path="rules.yaml")
    assert report["results"]["tier"] == {}


@pytest.mark.anyio
async def test_an_embedding_request_is_not_open_to_feedback(demo: httpx.AsyncClient) -> None:
    answered = await embed(demo, input="feedback?")
    request_id = answered.headers["x-router-request-id"]
    chat = await demo.post(
        "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert (
        await demo.post("/v1/feedback", json={"request_id": chat.headers["x-router-request-id"], "score": 1})
    ).status_code == 200
    refused = await demo.post("/v1/feedback", json={"request_id": request_id, "score": 1})
    assert refused.status_code == 404


@pytest.mark.anyio
@pytest.mark.usefixtures("rate_window")
async def test_router_keys_tiers_and_rate_limits_apply(tmp_path: Path) -> None:
    keys = {
        "keys": [
            {"name": "chat-only", "sha256": hash_key("sk-chat-only-0001"), "tiers": ["standard"]},
            {
                "name": "limited",
                "sha256": hash_key("sk-limited-0002"),
                "tiers": ["budget", "embed"],
                "rpm": 1,
            },
        ]
    }
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump(keys), encoding="utf-8")
    app = create_app(Settings(rules_path=DEMO, store_url="memory://", keys_file=keys_file))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:

        async def as_key(key: str, model: str) -> httpx.Response:
            body = {"model": model, "input": "hello"}
            return await client.post("/v1/embeddings", json=body, headers={"authorization": f"Bearer {key}"})

        named = await as_key("sk-chat-only-0001", "embed")
        assert (named.status_code, named.json()["error"]["code"]) == (403, "tier_not_allowed")
        routed = await as_key("sk-chat-only-0001", "auto")  # no embedding tier allowed: never a chat one
        assert (routed.status_code, routed.json()["error"]["code"]) == (403, "tier_not_allowed")
        first = await as_key("sk-limited-0002", "auto")
        assert (first.status_code, first.headers["x-router-tier"]) == (200, "embed")
        second = await as_key("sk-limited-0002", "auto")
        assert (second.status_code, second.json()["error"]["code"]) == (429, "rate_limit_exceeded")
        anonymous = await client.post("/v1/embeddings", json={"model": "auto", "input": "x"})
        assert anonymous.status_code == 401
