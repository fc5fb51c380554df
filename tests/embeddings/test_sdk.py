"""POST /v1/embeddings and GET /v1/models/{id} through the `openai` SDK, against `tier-router
serve` (SQLite store) in front of two fake OpenAI-compatible providers."""

from __future__ import annotations

import base64
import math
import struct

import httpx
import openai
import pytest

from tests.embeddings.conftest import PRICE_B, line_of
from tests.support.fake_providers import FakeProviders
from tests.support.router_process import Router, micro


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_the_sdk_falls_back_to_the_second_provider_and_the_spend_is_recorded(
    router: Router, client: openai.OpenAI, fakes: FakeProviders
) -> None:
    fakes.a.control(mode="status", status=503, times=1)
    before = router.ledger()
    raw = client.embeddings.with_raw_response.create(model="auto", input="the quick brown fox")
    reply = raw.parse()
    headers = raw.headers
    assert headers["x-router-tier"] == "vectors"
    assert headers["x-router-rule"] == "default"
    assert headers["x-router-model"] == "emb-b"
    assert headers["x-router-provider"] == "provider-b"
    assert headers["x-router-attempts"] == "2"
    assert fakes.a.requests == 1
    assert fakes.b.requests == 1
    assert fakes.b.last["path"] == "/v1/embeddings"
    assert fakes.b.last["body"]["model"] == "embed-b"
    assert fakes.b.last["headers"]["authorization"] == "Bearer sk-fake-embeddings-0123456789"
    # the SDK asked for base64 (its default) and decoded the fake's answer: a unit vector
    assert fakes.b.last["body"]["encoding_format"] == "base64"
    (item,) = reply.data
    assert len(item.embedding) == 8
    assert abs(norm(item.embedding) - 1) < 1e-5
    assert reply.model == "embed-b"
    tokens = reply.usage.prompt_tokens
    assert tokens == 5  # the fake's count: 19 characters / 4, rounded up
    cost = micro(headers["x-router-cost-usd"])
    assert cost == math.ceil(tokens * PRICE_B)

    line = line_of(router, headers["x-router-request-id"])
    assert line["endpoint"] == "embeddings"
    assert line["path"] == "/v1/embeddings"
    assert line["outcome"] == "ok"
    assert line["status"] == 200
    assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [("emb-a", "http_503"), ("emb-b", "ok")]
    assert line["cost_micro_usd"] == cost
    assert line["prompt_tokens"] == tokens
    after = router.ledger()
    assert after.requests == before.requests + 1
    assert after.total == before.total + cost


def test_models_retrieve_answers_auto_tiers_and_models_and_404s_the_rest(client: openai.OpenAI) -> None:
    for name in ("auto", "vectors", "emb-a", "chat", "chat-a"):
        found = client.models.retrieve(name)
        assert (found.id, found.object, found.owned_by) == (name, "model", "tier-router")
    listed = {m.id for m in client.models.list()}
    assert {"auto", "vectors", "emb-a", "emb-b", "chat", "chat-a"} <= listed
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_base64_is_passed_through_and_decodes_to_the_float_answer(
    router: Router, fakes: FakeProviders
) -> None:
    headers = {"authorization": f"Bearer {router.key}"}
    body = {"model": "emb-a", "input": "round trip", "dimensions": 6}
    url = router.url + "/v1/embeddings"
    floats = httpx.post(url, json={**body, "encoding_format": "float"}, headers=headers)
    encoded = httpx.post(url, json={**body, "encoding_format": "base64"}, headers=headers)
    assert floats.status_code == encoded.status_code == 200
    vector = floats.json()["data"][0]["embedding"]
    text = encoded.json()["data"][0]["embedding"]
    assert isinstance(text, str)
    assert len(vector) == 6
    decoded = struct.unpack("<6f", base64.b64decode(text))
    assert all(abs(a - b) < 1e-6 for a, b in zip(decoded, vector, strict=True))
    assert fakes.a.last["body"]["dimensions"] == 6  # passed through as sent


def test_a_list_input_gets_one_vector_per_item_in_order(client: openai.OpenAI, fakes: FakeProviders) -> None:
    texts = ["alpha", "beta", "alpha"]
    reply = client.embeddings.create(model="vectors", input=texts, encoding_format="float")
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert reply.data[0].embedding == reply.data[2].embedding != reply.data[1].embedding
    ids = client.embeddings.create(model="auto", input=[[1, 2, 3], [4, 5]], encoding_format="float")
    assert len(ids.data) == 2
    assert ids.usage.prompt_tokens == 5
    assert fakes.a.last["body"]["input"] == [[1, 2, 3], [4, 5]]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"input": 42}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", 3]}, "input[1]"),
        ({"input": [[1, "2"]]}, "input[0][1]"),
        ({"input": "x", "dimensions": "8"}, "dimensions"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "user": 7}, "user"),
        ({"input": "x", "metadata": {"team": 1}}, "metadata.team"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    client: openai.OpenAI, fakes: FakeProviders, fields: dict[str, object], param: str
) -> None:
    extra = {k: v for k, v in fields.items() if k != "input"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="auto", input=fields["input"], extra_body=extra)  # type: ignore[arg-type]
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert caught.value.response.headers.get("x-router-request-id")
    assert fakes.a.requests == fakes.b.requests == 0


def test_unknown_models_are_404_and_models_of_the_other_kind_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="text-embedding-9", input="x")
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as chat_model:
        client.embeddings.create(model="chat-a", input="x")
    assert "chat" in chat_model.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as embedding_model:
        client.chat.completions.create(model="vectors", messages=[{"role": "user", "content": "hi"}])
    assert "embedding" in embedding_model.value.body["message"]  # type: ignore[index]
