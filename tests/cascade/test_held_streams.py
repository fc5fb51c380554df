"""Issue 15: `cascade: {stream: hold}` — a streamed answer validated before its first byte.

The real router (default configuration) in front of a scripted provider; the real `openai`
SDK streams. The `held` rule (header `x-hold`) puts the cheap tier's answer under a hold-back
cascade to the premium tier.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack, cost
from tests.support.clients import wait_until
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

HOLD = {"x-hold": "1"}
JSON_MODE = {"type": "json_object"}


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        rules=[
            {
                "name": "held",
                "tier": "budget",
                "when": {"header": {"name": "x-hold", "present": True}},
                "cascade": {"to": "premium", "on": ["json", "refusal"], "stream": "hold"},
            }
        ],
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("held"), rules) as stack:
        yield stack


def stream(stack: AnswerStack, script: str, **params: Any) -> tuple[str, Any, dict[str, str]]:
    """The text the SDK reassembled, the last chunk, and the response headers."""
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=[{"role": "user", "content": f"hi [script={script}]"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=HOLD,
        **params,
    ) as response:
        chunks = list(response.parse())
        headers = dict(response.headers)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks[-1], headers


def test_a_held_stream_that_fails_is_replaced_before_its_first_byte(stack: AnswerStack) -> None:
    cheap, good = Answer("{not json"), Answer('{"fine": true}', completion_tokens=9)
    stack.app.script("h-bad", cheap=[cheap], good=[good])

    text, last, headers = stream(stack, "h-bad", response_format=JSON_MODE)

    assert json.loads(text) == {"fine": True}  # nothing of the cheap answer reached the client
    assert headers["x-router-escalated-from"] == "budget"
    assert headers["x-router-tier"] == "premium"
    assert headers["x-router-model"] == "good"
    assert headers["x-router-validation"].startswith("json: ")
    both = cost("cheap", cheap) + cost("good", good)
    assert round(last.usage.model_extra["cost_usd"] * 1_000_000) == both
    assert last.usage.completion_tokens == 9  # the served answer's own usage
    line = stack.line(headers["x-router-request-id"])
    assert line["outcome"] == "ok"
    assert line["cost_micro_usd"] == both
    assert line["escalations"][0]["cost_micro_usd"] == cost("cheap", cheap)


def test_a_held_stream_that_passes_is_served_whole(stack: AnswerStack) -> None:
    stack.app.script("h-good", cheap=[Answer('{"a": [1, 2, 3]}')], good=[Answer("{}")])

    text, _, headers = stream(stack, "h-good", response_format=JSON_MODE)

    assert json.loads(text) == {"a": [1, 2, 3]}
    assert headers["x-router-model"] == "cheap"
    assert "x-router-escalated-from" not in headers
    line = stack.line(headers["x-router-request-id"])
    assert (line["outcome"], line["cascade"]) == ("ok", "premium")
    assert stack.app.calls("h-good", "good") == []


def test_an_early_refusal_escalates_without_waiting_for_the_rest(stack: AnswerStack) -> None:
    refusal = Answer("I'm sorry, but I can't help with that. " + "la " * 400, completion_tokens=420)
    refusal.pause_s = 0.02  # ~300 events: 6 s to read it whole
    stack.app.script("h-refuse", cheap=[refusal], good=[Answer("Here is the answer.")])

    started = time.monotonic()
    text, _, headers = stream(stack, "h-refuse")
    elapsed = time.monotonic() - started

    assert text == "Here is the answer."
    assert headers["x-router-validation"].startswith("refusal: ")
    assert elapsed < 4.0, f"waited {elapsed:.1f} s: the refusal was not caught early"
    line = stack.line(headers["x-router-request-id"])
    (escalation,) = line["escalations"]
    assert escalation["completion_tokens"] < 420  # priced from what it streamed: it was cut short
    assert line["cost_estimated"] is True


def test_a_held_stream_whose_escalation_fails_is_served_as_it_was(stack: AnswerStack) -> None:
    stack.app.script("h-alone", cheap=[Answer("{oops")], good=[Answer(status=503)])

    text, _, headers = stream(stack, "h-alone", response_format=JSON_MODE)

    assert text == "{oops"
    assert headers["x-router-model"] == "cheap"
    assert headers["x-router-validation"].startswith("json: ")
    assert stack.line(headers["x-router-request-id"])["validation"].startswith("json: ")


def test_a_client_that_leaves_during_the_hold_is_settled_once(stack: AnswerStack) -> None:
    slow = Answer('{"a": "' + "x" * 2000 + '"}', completion_tokens=500)
    slow.pause_s = 0.02  # 500 events: 10 s
    stack.app.script("h-leave", cheap=[slow], good=[Answer("{}")])
    before = stack.router.ledger()
    gone_before = sum(line["outcome"] == "client_gone" for line in stack.router.request_lines())
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi [script=h-leave]"}],
        "stream": True,
        "response_format": JSON_MODE,
    }
    headers = {"authorization": f"Bearer {ROUTER_KEY}", **HOLD}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(stack.router.url + "/v1/chat/completions", json=body, headers=headers, timeout=1.0)

    def gone() -> int:
        return sum(line["outcome"] == "client_gone" for line in stack.router.request_lines())

    wait_until(lambda: gone() == gone_before + 1, 15, "the abandoned request's log line")
    wait_until(lambda: stack.router.ledger().requests == before.requests + 1, 15, "the request to be counted")
    after = stack.router.ledger()
    assert after.budget_committed == after.budget_spent  # the reservation was settled, not left held
    assert after.total > before.total  # what the cheap model streamed was paid for
