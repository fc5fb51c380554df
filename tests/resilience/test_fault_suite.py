"""Issue 14's fault-injection suite, the cases not covered by its other files: the real router
(`tier-router serve`, default configuration: SQLite store, access log on) in front of two fake
OpenAI-compatible providers on loopback, driven by the real `openai` SDK. Each case asserts
what the client sees, the attempts per model, and a timing bound.

Covered elsewhere (same setup): 429 with short/long `retry-after`, persistent 429, one 500 then
OK, persistent 503, context-length and content-policy 400s (`test_retry_and_context.py`); a
stream without `[DONE]`, malformed chunks (`test_tolerant_streams.py`); cuts and stalls after
content, a fallback that rejects prefill (`test_stream_recovery.py`); a provider that fails and
recovers under steady traffic (`test_recovery_after_outage.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import make_fake_upstream
from tests.support.loopback import run_uvicorn_in_thread
from tests.support.router_process import Router, running_router
from tests.support.stack import (
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
    ROUTER_KEY,
    Upstream,
    sqlite_url,
)

pytestmark = pytest.mark.integration

FIRST_TOKEN_S = 1.0
TOTAL_S = 2.0
SLACK_S = 1.5  # scheduling headroom on a loaded 2-core machine


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[Upstream, Upstream]]:
    """Two bare fakes (no script wrapper: `reset` must reach uvicorn's transport to send a RST)."""
    fake_a, fake_b = (
        make_fake_upstream("openai", name="suite-a"),
        make_fake_upstream("openai", name="suite-b"),
    )
    with run_uvicorn_in_thread(fake_a) as url_a, run_uvicorn_in_thread(fake_b) as url_b:
        yield Upstream(url_a, fake_a), Upstream(url_b, fake_b)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def router(fakes: tuple[Upstream, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    a, b = fakes
    timeouts = {"connect": 2, "read": 5, "total": TOTAL_S, "first_token": FIRST_TOKEN_S, "stall": 1}
    provider = {"kind": "openai", "api_key_env": PROVIDER_KEY_ENV, "timeouts": timeouts}
    rules: dict[str, Any] = {
        "version": 1,
        "providers": {
            "pa": {**provider, "base_url": a.url + "/v1"},
            "pb": {**provider, "base_url": b.url + "/v1"},
        },
        "models": {
            "model-a": {"provider": "pa", "id": "a-2025", "price": {"input": 1, "output": 4}},
            "model-b": {"provider": "pb", "id": "b-2025", "price": {"input": 1, "output": 4}},
        },
        "tiers": {"main": ["model-a", "model-b"]},
        "default_tier": "main",
        "breakers": {"enabled": False},  # each case meets its own fault, not the last case's breaker
    }
    workdir = tmp_path_factory.mktemp("fault-suite")
    env = {PROVIDER_KEY_ENV: PROVIDER_KEY}
    with running_router(workdir, rules, key=ROUTER_KEY, store_url=sqlite_url(workdir), env=env) as running:
        yield running


@pytest.fixture
def client(router: Router) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=30) as sdk:
        yield sdk


@pytest.fixture(autouse=True)
def healthy(fakes: tuple[Upstream, Upstream]) -> Iterator[None]:
    yield
    for fake in fakes:
        httpx.post(fake.url + "/_control", json={"reset": True}, timeout=5)


def fault(fake: Upstream, **config: Any) -> None:
    httpx.post(fake.url + "/_control", json=config, timeout=5).raise_for_status()


def stats(fake: Upstream) -> dict[str, Any]:
    return httpx.get(fake.url + "/_stats", timeout=5).json()


def ask(client: openai.OpenAI, *, stream: bool = False) -> tuple[Any, float, dict[str, str]]:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    started = time.monotonic()
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="auto", messages=messages, stream=True
        ) as raw:
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
            return text, time.monotonic() - started, dict(raw.headers)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
    return raw.parse(), time.monotonic() - started, dict(raw.headers)


def test_connection_reset_before_headers_moves_on_without_a_retry(client, fakes) -> None:
    a, _ = fakes
    fault(a, mode="reset")
    reply, elapsed, headers = ask(client)
    assert reply.model == "b-2025"  # the response's model is the one that answered
    assert headers["x-router-model"] == "model-b"
    assert headers["x-router-attempts"] == "2"  # a reset points at the provider: no same-model retry
    assert stats(a)["requests"] == 1
    assert elapsed < SLACK_S


def test_a_silent_upstream_is_left_after_its_total_timeout(client, fakes) -> None:
    a, _ = fakes
    fault(a, mode="timeout", delay_s=30)
    reply, elapsed, headers = ask(client)
    assert reply.model == "b-2025"
    assert headers["x-router-attempts"] == "2"  # a timeout is not retried on the same model
    assert TOTAL_S - 0.2 <= elapsed < TOTAL_S + SLACK_S


def test_a_slow_first_token_is_not_waited_for_past_first_token(client, fakes) -> None:
    a, _ = fakes
    fault(a, mode="timeout", delay_s=30)  # no first token for 30 s
    text, elapsed, headers = ask(client, stream=True)
    assert text  # the second model's whole answer, the client never saw the first
    assert headers["x-router-model"] == "model-b"
    assert FIRST_TOKEN_S - 0.2 <= elapsed < FIRST_TOKEN_S + SLACK_S


def test_a_persistent_5xx_on_both_is_one_clean_error_naming_both(client, fakes) -> None:
    a, b = fakes
    fault(a, mode="status", status=503)
    fault(b, mode="status", status=503)
    with pytest.raises(openai.APIStatusError) as raised:
        ask(client)
    assert raised.value.status_code == 502
    message = str(raised.value)
    assert "model-a" in message
    assert "model-b" in message
    assert (stats(a)["requests"], stats(b)["requests"]) == (2, 2)  # one retry each, then give up
