"""Embeddings under the chat path's controls, through `tier-router serve` (SQLite store): the
hard cap reserves input tokens × the dearest model of the chain and settles on usage; a
model's breaker opens after failures and its provider is then skipped."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import openai
import pytest

from tests.embeddings.conftest import PRICE_A, line_of, start
from tests.support.clients import sync_client
from tests.support.fake_providers import FakeProviders
from tests.support.router_process import micro

CAP_USD = 0.01
"""10,000 micro-dollars. With `reservation_margin` 1.5 and 2 overhead tokens per input, a
30-character input reserves 48 tokens: 4,800 at emb-a's price (100 per token), 14,400 at
emb-b's (300) — over the cap, although emb-a alone would fit."""


def test_the_hard_cap_refuses_an_embedding_whose_dearest_candidate_does_not_fit(
    tmp_path: Path, fakes: FakeProviders
) -> None:
    with start(tmp_path, fakes, budgets={"daily_usd": CAP_USD}) as router:
        client = sync_client(router.url, router.key)
        with pytest.raises(openai.RateLimitError) as refused:
            client.embeddings.create(model="auto", input="x" * 30)
        assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        assert refused.value.response.headers["x-router-tier"] == "vectors"
        assert fakes.a.requests == 0
        assert fakes.b.requests == 0
        line = line_of(router, refused.value.response.headers["x-router-request-id"])
        assert (line["endpoint"], line["outcome"], line["status"]) == ("embeddings", "refused", 429)

        raw = client.embeddings.with_raw_response.create(model="auto", input="y" * 10)
        reply = raw.parse()
        assert raw.headers["x-router-model"] == "emb-a"
        cost = micro(raw.headers["x-router-cost-usd"])
        assert cost == math.ceil(reply.usage.prompt_tokens * PRICE_A)
        ledger = router.ledger()
        assert ledger.budget_spent == cost  # settled on the provider's usage, not the reservation
        assert ledger.budget_committed == cost  # nothing left held


def test_a_breaker_opens_after_failures_and_its_model_is_skipped(
    tmp_path: Path, fakes: FakeProviders
) -> None:
    breakers = {"failure_threshold": 3, "window_s": 60, "recovery_s": 60, "cache_ttl_s": 0}
    with start(tmp_path, fakes, breakers=breakers) as router:
        fakes.a.control(mode="status", status=500)
        client = sync_client(router.url, router.key)
        for i in range(3):
            raw = client.embeddings.with_raw_response.create(model="auto", input=f"failing {i}")
            assert raw.headers["x-router-model"] == "emb-b"
            assert raw.headers["x-router-attempts"] == "2"
        assert fakes.a.requests == 3
        raw = client.embeddings.with_raw_response.create(model="auto", input="skipped")
        assert raw.headers["x-router-model"] == "emb-b"
        assert raw.headers["x-router-attempts"] == "1"
        assert fakes.a.requests == 3  # the open breaker kept the request from provider A
        line = line_of(router, raw.headers["x-router-request-id"])
        assert [(a["model"], a["outcome"]) for a in line["attempts"]] == [
            ("emb-a", "breaker_open"),
            ("emb-b", "ok"),
        ]
        status = httpx.get(
            router.url + "/v1/router/status", headers={"authorization": f"Bearer {router.key}"}
        )
        assert status.json()["breakers"]["emb-a"]["model"] == "open"
