"""Tokens, cached reads and their savings end to end: the real openai SDK against the router on
127.0.0.1, a provider (`usage_fake`) answering with the usage the test sets — Anthropic's
`cache_read_input_tokens`, OpenAI's `prompt_tokens_details.cached_tokens` — plain, streamed
and with `n` > 1. What the client is charged, the request's log line (with its EMF metrics),
the ledger (read back through GET /v1/router/status) and the token-inflation metric against
last week's baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from tier_router.request_line import Outcome, RequestLine
from tier_router.spend.counters import DAY_S, SpendLedger
from tier_router.spend.results import RequestResult
from tier_router.store.memory import MemoryStore

from tests.inflation.usage_fake import Usage, UsageFake
from tests.support.clients import sync_client
from tests.support.loopback import run_uvicorn_in_thread
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread

ROUTER_KEY = "rk-tokens"
KEYS = {"OPENAI_KEY": "sk-test-openai-SECRET123", "ANTHROPIC_KEY": "sk-ant-test-SECRET789"}
CLAUDE = {"input": 3.0, "output": 15.0, "cached_input": 0.3}
GPT = {"input": 1.0, "output": 4.0, "cached_input": 0.5}


def rules(url: str) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {
            "openai": {"kind": "openai", "base_url": f"{url}/openai/v1", "api_key_env": "OPENAI_KEY"},
            "anthropic": {
                "kind": "anthropic",
                "base_url": f"{url}/anthropic",
                "api_key_env": "ANTHROPIC_KEY",
            },
        },
        "models": {
            "gpt": {"provider": "openai", "id": "gpt-test", "price": GPT},
            "claude": {"provider": "anthropic", "id": "claude-test", "price": CLAUDE, "max_output": 1024},
        },
        "tiers": {"fast": ["gpt"], "smart": ["claude"]},
        "default_tier": "fast",
        "rules": [
            {"name": "deep", "tier": "smart", "when": {"last_user_matches": {"pattern": "prove"}}},
        ],
    }


@dataclass
class Stack:
    fake: UsageFake
    url: str
    store: MemoryStore
    gateway: Any

    def client(self) -> openai.OpenAI:
        return sync_client(self.url, ROUTER_KEY)

    def status(self) -> dict[str, Any]:
        response = httpx.get(
            self.url + "/v1/router/status", headers={"authorization": f"Bearer {ROUTER_KEY}"}, timeout=10
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture
def stack() -> Iterator[Stack]:
    """A fresh router (memory store, EMF on) in front of a fresh fake, per test."""
    fake = UsageFake()
    store = MemoryStore()
    with contextlib.ExitStack() as stack:
        fake_url = stack.enter_context(run_uvicorn_in_thread(fake))
        settings = app_settings(store_url="memory://", api_keys=(ROUTER_KEY,), emf_metrics=True)
        app = build_app(
            rules(fake_url), settings=settings, keys=KEYS, client=production_client(), store=store
        )
        url = stack.enter_context(serve_in_thread(app))
        yield Stack(fake, url, store, app.state.gateway)


def request_lines(
    capsys: pytest.CaptureFixture[str], count: int, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """The chat request lines the router wrote so far, once there are `count` of them."""
    lines: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        lines += [json.loads(text) for text in capsys.readouterr().out.splitlines() if text.startswith("{")]
        chat = [r for r in lines if r.get("event") == "request" and r.get("path") == "/v1/chat/completions"]
        if len(chat) >= count or time.monotonic() > deadline:
            assert len(chat) == count, chat
            return chat
        time.sleep(0.02)


def model_today(status: dict[str, Any], dim: str, name: str) -> dict[str, Any]:
    """Today's counts of one model or rule in the status trend."""
    day = status["trend"][dim][name]["by_day"][-1]
    assert day["day"] == status["spend"]["day"]
    return day


# 50,000 cached tokens, 100 uncached, 40 out: 50,000 × 0.3 + 100 × 3 + 40 × 15 = 15,900 µ$;
# the cache saved 50,000 × (3 − 0.3) = 135,000 µ$.
ANTHROPIC_USAGE = Usage(input=100, output=40, cached=50_000)
ANTHROPIC_COST = 15_900
ANTHROPIC_SAVED = 135_000


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_reads_are_priced_at_the_cached_rate_and_their_savings_counted(
    stack: Stack, capsys: pytest.CaptureFixture[str], stream: bool
) -> None:
    stack.fake.usage = ANTHROPIC_USAGE
    messages = [{"role": "user", "content": "prove it"}]
    with stack.client() as client:
        if stream:
            options = {"include_usage": True}
            with client.chat.completions.create(  # type: ignore[call-overload]
                model="auto", messages=messages, stream=True, stream_options=options
            ) as chunks:
                usage = [c.usage for c in chunks if c.usage is not None][-1].model_dump()
            assert usage["cost_usd"] == pytest.approx(ANTHROPIC_COST / 1e6)
        else:
            raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
            assert raw.headers["x-router-cost-usd"] == "0.015900"
            usage = raw.parse().usage.model_dump()  # type: ignore[union-attr]
    # the Anthropic adapter's mapping: prompt = input + cache reads + cache writes
    assert usage["prompt_tokens"] == 50_100
    assert usage["prompt_tokens_details"]["cached_tokens"] == 50_000
    assert stack.fake.bodies[-1]["stream"] is True if stream else "stream" not in stack.fake.bodies[-1]

    [line] = request_lines(capsys, 1)
    assert (line["model"], line["rule"], line["outcome"]) == ("claude", "deep", "ok")
    assert (line["prompt_tokens"], line["completion_tokens"], line["cached_tokens"]) == (50_100, 40, 50_000)
    assert (line["cost_micro_usd"], line["cache_savings_micro_usd"]) == (ANTHROPIC_COST, ANTHROPIC_SAVED)
    # the EMF block: the token metrics with the existing dimensions
    assert (line["InputTokens"], line["OutputTokens"], line["CachedTokens"]) == (50_100, 40, 50_000)
    assert line["CacheSavings"] == ANTHROPIC_SAVED
    [directive, *_] = line["_aws"]["CloudWatchMetrics"]
    names = [m["Name"] for m in directive["Metrics"]]
    assert {"InputTokens", "OutputTokens", "CachedTokens", "CacheSavings"} <= set(names)
    assert directive["Dimensions"] == [["tier"], ["model", "provider"]]
    assert "OutputTokensVsLastWeek" not in line  # no baseline: nothing counted last week

    status = stack.status()
    for dim, name in (("model", "claude"), ("rule", "deep")):
        today = model_today(status, dim, name)
        assert today["requests"] == today["metered"] == today["cached_requests"] == 1
        assert (today["input_tokens"], today["output_tokens"], today["cached_tokens"]) == (50_100, 40, 50_000)
        assert (today["cost_micro_usd"], today["savings_micro_usd"]) == (ANTHROPIC_COST, ANTHROPIC_SAVED)
        assert today["cached_share"] == round(50_000 / 50_100, 4)
        assert today["savings_usd"] == "0.135000"
    assert status["spend"]["total_usd"] == "0.015900"


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_count_the_usage_the_provider_reported_for_all_of_them(
    stack: Stack, capsys: pytest.CaptureFixture[str], stream: bool
) -> None:
    """n = 3: the provider's usage covers the three answers (here 90 output tokens); streamed,
    it comes in the final chunk, which the router asked for (`stream_options.include_usage`)
    even though the client did not."""
    stack.fake.usage = Usage(input=120, output=90, cached=1_000)
    messages = [{"role": "user", "content": "three ways to say hello"}]
    with stack.client() as client:
        if stream:
            with client.chat.completions.create(model="auto", messages=messages, n=3, stream=True) as chunks:  # type: ignore[call-overload]
                indexes = {choice.index for chunk in chunks for choice in chunk.choices}
            assert indexes == {0, 1, 2}
            assert stack.fake.bodies[-1]["stream_options"] == {"include_usage": True}
        else:
            answer = client.chat.completions.create(model="auto", messages=messages, n=3)
            assert len(answer.choices) == 3
    [line] = request_lines(capsys, 1)
    assert (line["model"], line["rule"]) == ("gpt", "default")
    assert (line["prompt_tokens"], line["completion_tokens"], line["cached_tokens"]) == (1_120, 90, 1_000)
    # 1,000 × 0.5 + 120 × 1 + 90 × 4 = 980 µ$; saved 1,000 × (1 − 0.5) = 500 µ$
    assert (line["cost_micro_usd"], line["cache_savings_micro_usd"]) == (980, 500)
    today = model_today(stack.status(), "model", "gpt")
    assert (today["metered"], today["output_tokens"], today["output_tokens_per_request"]) == (1, 90, 90.0)
    assert (today["cached_requests"], today["savings_micro_usd"]) == (1, 500)


def test_without_cached_reads_the_line_and_the_ledger_say_nothing_of_a_cache(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.fake.usage = Usage(input=200, output=10)
    with stack.client() as client:
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    [line] = request_lines(capsys, 1)
    assert "cached_tokens" not in line
    assert "cache_savings_micro_usd" not in line
    assert (line["CachedTokens"], line["CacheSavings"]) == (0, 0)
    item = asyncio.run(
        stack.store.get_many(stack.gateway.spend.ledger.item_keys(stack.status()["spend"]["day"]))
    )
    [fields] = item.values()
    assert (fields["model_in.gpt"], fields["model_out.gpt"]) == (200, 10)
    assert not [name for name in fields if name.split(".")[0].endswith(("_cin", "_chit", "_sav"))]


def test_each_answer_carries_its_output_against_its_models_last_week(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last week (day D-10) claude answered 20 requests with 400 output tokens: 20 per request.
    The day's first line starts the baseline's load (no metric on it: nobody waits for the
    load); once loaded, a 30-token answer carries 1.5 — by model and for the whole router."""
    ledger = stack.gateway.spend.ledger
    today = ledger.today_key()
    seeded = SpendLedger(stack.store, clock=lambda: time.time() - 10 * DAY_S)
    past = RequestLine(
        "p", model="claude", rule="deep", outcome=Outcome.OK, prompt_tokens=50, completion_tokens=20
    )
    for _ in range(20):
        asyncio.run(
            seeded.record(
                cost=1,
                tier="smart",
                model="claude",
                rule="deep",
                router_key=None,
                result=RequestResult.of(past, cost=1),
            )
        )
    stack.fake.usage = Usage(input=100, output=30)
    prove = [{"role": "user", "content": "prove it"}]
    with stack.client() as client:
        client.chat.completions.create(model="auto", messages=prove)
        baseline = stack.gateway.access_log.baseline
        deadline = time.monotonic() + 10
        while "claude" not in baseline.per_request:
            assert time.monotonic() < deadline, "the baseline never loaded"
            time.sleep(0.02)
        assert (baseline.day, baseline.per_request) == (today, {"claude": 20.0})
        client.chat.completions.create(model="auto", messages=prove)
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])  # gpt
    first, second, other = request_lines(capsys, 3)
    assert "OutputTokensVsLastWeek" not in first
    assert second["OutputTokensVsLastWeek"] == 1.5
    inflation = second["_aws"]["CloudWatchMetrics"][-1]
    assert inflation == {
        "Namespace": "TierRouter",
        "Dimensions": [[], ["model"]],
        "Metrics": [{"Name": "OutputTokensVsLastWeek", "Unit": "None"}],
    }
    assert "OutputTokensVsLastWeek" not in other  # gpt has no baseline
    assert all(
        d["Metrics"][0]["Name"] != "OutputTokensVsLastWeek" for d in other["_aws"]["CloudWatchMetrics"]
    )
