"""Issue 14: failover that rescues — same-model retries and context-window fallback.

The real router (`tier-router serve`, its own process) in front of the scripted fake provider
on 127.0.0.1 (`tests.support.scripted_upstream`): each request's user message scripts, per
provider model, what the fake answers to the 1st, 2nd, ... request for that model (a 429 with
`retry-after`, a 503, a context-window refusal, a content-policy refusal, or the answer). What
happened is read three ways: the client's response (`x-router-model`, `x-router-attempts`, the
answering model id in the body), the router's access-log line (each attempt's model and
outcome), and the fake's own count of requests per model.

Before this change every one of these refusals went straight to the next candidate (or, for a
context-window refusal, straight back to the client): the retry and context tests fail there.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.fallback import Outcome, refusal_outcome
from tier_router.routing.loader import RulesError, parse_rules

from tests.support.router_process import REQUEST_ID, Router, free_port, running_router
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.stack import scripted_upstream

ROUTER_KEY = "trk-retry-ROUTERKEY-0a1b2c3d4e5f"
KEY_ENV = "RETRY_PROVIDER_KEY"
PRICE = {"input": 1.0, "output": 2.0}


def model(model_id: str, window: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"provider": "fake", "id": model_id, "price": PRICE, "context_window": window, **extra}


def rules(upstream_url: str, dead_url: str) -> dict[str, Any]:
    """Retry settings are the documented defaults (none given), except model `once`'s override."""
    fake = {"kind": "openai", "base_url": f"{upstream_url}/v1", "api_key_env": KEY_ENV}
    dead = {**fake, "base_url": dead_url, "timeouts": {"connect": 1.0}}
    return {
        "version": 1,
        "providers": {"fake": fake, "dead": dead},
        "models": {
            "small": model("small-1", 8_000),
            "tiny": model("tiny-1", 4_000),
            "big": model("big-1", 128_000),
            "once": model("once-1", retry={"max_attempts": 1}),
            "dead": {**model("dead-1"), "provider": "dead"},
        },
        "tiers": {
            "main": ["small", "big"],
            "ctx": ["small", "tiny", "big"],
            "ctx-small": ["small", "tiny"],
            "once-first": ["once", "big"],
            "dead-first": ["dead", "big"],
        },
        "default_tier": "main",
        # Real breakers (a retry asks the plan), never opened by the failures scripted here.
        "breakers": {"failure_threshold": 1000},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Router, ScriptedUpstream]]:
    with scripted_upstream("retry-fake") as upstream:
        dead_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
        workdir = Path(tmp_path_factory.mktemp("retry"))
        with running_router(
            workdir,
            rules(upstream.url, dead_url),
            key=f"team={ROUTER_KEY}",
            store_url="memory://",
            env={KEY_ENV: "sk-retry-provider-key"},
        ) as router:
            router.key = ROUTER_KEY
            yield router, upstream.app


class Asked:
    """One request through the router: the response, how long it took, its access-log line,
    and how many requests each provider model got for it."""

    def __init__(self, stack: tuple[Router, ScriptedUpstream], tier: str, script: str, stream: bool = False):
        router, upstream = stack
        tag = uuid.uuid4().hex[:12]
        body = {
            "model": tier,
            "stream": stream,
            "messages": [{"role": "user", "content": f"Hello [tag={tag}] {script}"}],
        }
        started = time.monotonic()
        self.response = httpx.post(
            f"{router.url}/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {ROUTER_KEY}"},
            timeout=15.0,
        )
        self.elapsed = time.monotonic() - started
        self.line = access_line(router, self.response.headers[REQUEST_ID])
        self.calls = {model: n for (t, model), n in upstream.counts.items() if t == tag}

    @property
    def attempts(self) -> list[tuple[str, str]]:
        return [(a["model"], a["outcome"]) for a in self.line["attempts"]]

    @property
    def header_attempts(self) -> int:
        return int(self.response.headers["x-router-attempts"])


def access_line(router: Router, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        for line in router.request_lines():
            if line.get("request_id") == request_id:
                return line
        assert time.monotonic() < deadline, "the request's access-log line never came"
        time.sleep(0.02)


# Every script also counts the models it does not fail: `[seq:big-1=ok]`.
COUNT_ALL = "[seq:big-1=ok] [seq:tiny-1=ok]"


def served_by(asked: Asked, model_name: str, model_id: str) -> None:
    assert asked.response.status_code == 200, asked.response.text
    assert asked.response.headers["x-router-model"] == model_name
    if asked.response.headers["content-type"].startswith("application/json"):
        assert asked.response.json()["model"] == model_id  # the answer is that model's


# -- same-model retries --------------------------------------------------------------------------


def test_a_429_with_a_short_retry_after_is_waited_on_and_the_same_model_answers(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=429:ra1,ok] {COUNT_ALL}")
    served_by(asked, "small", "small-1")
    assert 1.0 <= asked.elapsed < 2.5  # the wait the provider asked for, and not much more
    assert asked.attempts == [("small", "http_429"), ("small", "ok")]
    assert asked.line["attempts"][1]["retry"] is True
    assert asked.header_attempts == 2
    assert asked.calls == {"small-1": 2}  # the fallback was never asked


def test_a_streamed_answer_is_retried_before_any_byte_reaches_the_client(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=429:ms300,ok] {COUNT_ALL}", stream=True)
    served_by(asked, "small", "small-1")
    assert asked.response.text.rstrip().endswith("data: [DONE]")
    assert '"model":"small-1"' in asked.response.text.replace(" ", "")
    assert "scripted failure" not in asked.response.text  # nothing of the 429 reached the client
    assert 0.3 <= asked.elapsed < 1.5  # retry-after-ms: 300
    assert asked.attempts == [("small", "http_429"), ("small", "ok")]
    assert asked.calls == {"small-1": 2}


def test_a_429_with_a_long_retry_after_moves_on_at_once(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=429:ra30] {COUNT_ALL}")
    served_by(asked, "big", "big-1")
    assert asked.elapsed < 1.0
    assert asked.attempts == [("small", "http_429"), ("big", "ok")]
    assert asked.calls == {"small-1": 1, "big-1": 1}


def test_a_persistent_429_is_retried_once_then_the_fallback_answers(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=429:ra1] {COUNT_ALL}")
    served_by(asked, "big", "big-1")
    assert 1.0 <= asked.elapsed < 2.5
    assert asked.attempts == [("small", "http_429"), ("small", "http_429"), ("big", "ok")]
    assert asked.header_attempts == 3
    assert asked.calls == {"small-1": 2, "big-1": 1}


def test_one_500_then_an_answer_keeps_the_same_model(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=500,ok] {COUNT_ALL}")
    served_by(asked, "small", "small-1")
    assert asked.elapsed < 1.0  # a short jittered backoff (100-300 ms by default)
    assert asked.attempts == [("small", "http_500"), ("small", "ok")]
    assert asked.calls == {"small-1": 2}


def test_a_persistent_503_is_retried_once_then_the_fallback_answers(stack) -> None:
    asked = Asked(stack, "main", f"[seq:small-1=503] {COUNT_ALL}")
    served_by(asked, "big", "big-1")
    assert asked.attempts == [("small", "http_503"), ("small", "http_503"), ("big", "ok")]
    assert asked.calls == {"small-1": 2, "big-1": 1}


def test_a_model_override_turns_its_retries_off(stack) -> None:
    asked = Asked(stack, "once-first", f"[seq:once-1=503] {COUNT_ALL}")
    served_by(asked, "big", "big-1")
    assert asked.attempts == [("once", "http_503"), ("big", "ok")]
    assert asked.calls == {"once-1": 1, "big-1": 1}


def test_a_refused_connection_is_not_retried(stack) -> None:
    asked = Asked(stack, "dead-first", COUNT_ALL)
    served_by(asked, "big", "big-1")
    assert asked.attempts == [("dead", "connect_error"), ("big", "ok")]
    assert asked.header_attempts == 2


def test_the_per_request_cap_stops_retries_but_every_candidate_is_tried(stack) -> None:
    asked = Asked(stack, "ctx", "[seq:small-1=503] [seq:tiny-1=503] [seq:big-1=503]")
    assert asked.response.status_code == 502, asked.response.text
    # routing.max_attempts (default 4) reached after tiny's retry: big gets one attempt, no retry
    assert asked.attempts == [("small", "http_503")] * 2 + [("tiny", "http_503")] * 2 + [("big", "http_503")]
    assert asked.header_attempts == 5
    assert asked.calls == {"small-1": 2, "tiny-1": 2, "big-1": 1}


# -- context-window fallback ---------------------------------------------------------------------


@pytest.mark.parametrize("body", ["ctx", "vllm"])
def test_a_prompt_too_long_moves_on_to_a_larger_window_skipping_smaller_ones(stack, body: str) -> None:
    asked = Asked(stack, "ctx", f"[seq:small-1=400:{body}] {COUNT_ALL}")
    served_by(asked, "big", "big-1")
    assert asked.attempts == [
        ("small", "context_length_exceeded"),
        ("tiny", "window_too_small"),
        ("big", "ok"),
    ]
    assert asked.header_attempts == 2  # the skipped one was not tried
    assert asked.calls == {"small-1": 1, "big-1": 1}  # never resent to small, never sent to tiny


@pytest.mark.parametrize("body", ["ctx", "vllm"])
def test_a_prompt_too_long_for_every_candidate_gets_the_providers_400(stack, body: str) -> None:
    asked = Asked(stack, "ctx-small", f"[seq:small-1=400:{body}] {COUNT_ALL}")
    assert asked.response.status_code == 400, asked.response.text
    # the provider's own message (vLLM's is a top-level `message`)
    assert "This model's maximum context length is" in asked.response.json()["error"]["message"]
    assert asked.attempts == [("small", "context_length_exceeded"), ("tiny", "window_too_small")]
    assert asked.calls == {"small-1": 1}


def test_a_content_policy_refusal_is_returned_as_is(stack) -> None:
    asked = Asked(stack, "ctx", f"[seq:small-1=400:policy] {COUNT_ALL}")
    assert asked.response.status_code == 400, asked.response.text
    assert "safety system" in asked.response.json()["error"]["message"]
    assert asked.attempts == [("small", "http_400")]
    assert asked.calls == {"small-1": 1}


# Real refusal texts, as reported in issues (see `fallback.CONTEXT_LENGTH_PATTERN`).
OPENAI = {"error": {"message": "…", "type": "invalid_request_error", "code": "context_length_exceeded"}}
DEEPSEEK = {
    "error": {
        "message": "This model's maximum context length is 65536 tokens. However, you requested 66343 "
        "tokens (62247 in the messages, 4096 in the completion).",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_request_error",
    }
}
ANTHROPIC = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 208656 tokens > 200000 maximum",
    },
}
VLLM_V1 = {
    "object": "error",
    "message": "Prompt length of 5016 is longer than the maximum model length of 4096.",
}
TGI = {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. Given: 3474"}
POLICY = {"error": {"message": "Rejected by our safety system", "code": "content_policy_violation"}}
AZURE_FILTER = {"error": {"message": "The response was filtered", "code": "content_filter", "status": 400}}
ECHOED = {"error": {"message": "Invalid value for 'user'", "param": "prompt is too long"}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, OPENAI, Outcome.CONTEXT_LENGTH),
        (400, DEEPSEEK, Outcome.CONTEXT_LENGTH),
        (400, ANTHROPIC, Outcome.CONTEXT_LENGTH),
        (400, VLLM_V1, Outcome.CONTEXT_LENGTH),
        (422, TGI, Outcome.CONTEXT_LENGTH),
        (400, POLICY, Outcome.http(400)),
        (400, AZURE_FILTER, Outcome.http(400)),
        (400, ECHOED, Outcome.http(400)),  # only the error's code and message are read
        (500, DEEPSEEK, Outcome.http(500)),
    ],
)
def test_context_window_refusals_are_told_apart(status: int, body: Any, expected: Outcome) -> None:
    assert refusal_outcome(status, json.dumps(body).encode()) is expected


@pytest.mark.parametrize(
    "retry",
    [{"max_wait_s": 1e308}, {"max_attempts": 0}, {"max_attempts": 50}, {"backoff_s": -1}, {"jitter": 1}],
)
def test_retry_settings_are_bounded(retry: dict[str, Any]) -> None:
    raw = rules("http://127.0.0.1:1", "http://127.0.0.1:2/v1")
    raw["providers"]["fake"]["retry"] = retry
    with pytest.raises(RulesError, match=f"provider .fake.: retry\\.{next(iter(retry))}: "):
        parse_rules(raw)


def test_a_model_override_replaces_only_the_fields_it_gives() -> None:
    raw = rules("http://127.0.0.1:1", "http://127.0.0.1:2/v1")
    raw["providers"]["fake"]["retry"] = {"max_wait_s": 5.0}
    routes = parse_rules(raw).routes
    assert (routes["once"].retry.max_attempts, routes["once"].retry.max_wait_s) == (1, 5.0)
    assert (routes["small"].retry.max_attempts, routes["small"].retry.max_wait_s) == (2, 5.0)
    assert (routes["dead"].retry.max_attempts, routes["dead"].retry.max_wait_s) == (2, 2.0)  # defaults
