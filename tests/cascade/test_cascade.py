"""Issue 15: cascades — a cheap tier's answer checked before it is returned, and escalated.

The real router (`tier-router serve`, default configuration: SQLite store, logging on) in front
of a scripted loopback provider with three sides (cheap, mid, good), read by the real `openai`
SDK. Every figure is checked against the scripted usage and the rules file's prices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack, cost
from tests.support.router_process import micro
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

CHECKS = ["json", "tool_args", "truncated"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": CHECKS}},
            "standard": {"models": ["mid"], "cascade": {"to": "premium", "on": ["json"]}},
            "premium": ["good"],
            "relay": {"models": ["cheap"], "cascade": {"to": "standard", "on": ["json"]}},
        },
        breakers={"failure_threshold": 2, "window_s": 60, "recovery_s": 60, "recovery_max_s": 60},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("cascade"), rules) as stack:
        yield stack


def client(stack: AnswerStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)


def ask(stack: AnswerStack, script: str, model: str = "budget", **params: Any) -> Any:
    return client(stack).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"hello [script={script}]"}], **params
    )


def usd(micro_usd: int) -> str:
    return f"{micro_usd / 1_000_000:.6f}"


JSON_MODE = {"response_format": {"type": "json_object"}}


def test_invalid_json_is_answered_by_the_escalation_tier_and_priced_as_two_calls(stack: AnswerStack) -> None:
    cheap, good = Answer("{not json", completion_tokens=7), Answer('{"ok": true}', prompt_tokens=12)
    stack.app.script("bad-json", cheap=[cheap], good=[good])
    before = stack.router.ledger()

    raw = ask(stack, "bad-json", **JSON_MODE)
    reply = raw.parse()

    assert json.loads(reply.choices[0].message.content) == {"ok": True}
    both = cost("cheap", cheap) + cost("good", good)
    assert raw.headers["x-router-escalated-from"] == "budget"
    assert raw.headers["x-router-tier"] == "premium"
    assert raw.headers["x-router-model"] == "good"
    assert raw.headers["x-router-validation"].startswith("json: ")
    assert micro(raw.headers["x-router-cost-usd"]) == both
    line = stack.line(raw.headers["x-router-request-id"])
    assert line["outcome"] == "ok"
    assert line["cost_micro_usd"] == both
    assert (line["tier"], line["escalated_from"], line["model"]) == ("premium", "budget", "good")
    (escalation,) = line["escalations"]
    assert escalation["model"] == "cheap"
    assert escalation["validator"] == "json"
    assert escalation["to"] == "premium"
    assert escalation["cost_micro_usd"] == cost("cheap", cheap)
    assert (escalation["prompt_tokens"], escalation["completion_tokens"]) == (10, 7)
    assert "not json" not in json.dumps(line)  # no answer text in the log
    after = stack.router.ledger()
    assert after.total - before.total == both
    assert after.budget_spent - before.budget_spent == both  # type: ignore[operator]
    assert after.budget_committed == after.budget_spent  # nothing left held


def test_a_valid_answer_is_served_by_the_cheap_tier_and_marked_validated(stack: AnswerStack) -> None:
    stack.app.script("good-json", cheap=[Answer('{"a": 1}')], good=[Answer('{"b": 2}')])

    raw = ask(stack, "good-json", **JSON_MODE)

    assert json.loads(raw.parse().choices[0].message.content) == {"a": 1}
    assert "x-router-escalated-from" not in raw.headers
    assert "x-router-validation" not in raw.headers
    line = stack.line(raw.headers["x-router-request-id"])
    assert line["cascade"] == "premium"
    assert "escalations" not in line
    assert stack.app.calls("good-json", "good") == []


def test_a_tool_call_that_breaks_its_schema_escalates(stack: AnswerStack) -> None:
    bad = Answer(None, tool_calls=[("weather", '{"town": "Paris"}')], finish="tool_calls")
    good = Answer(None, tool_calls=[("weather", '{"city": "Paris", "days": 2}')], finish="tool_calls")
    stack.app.script("bad-tool", cheap=[bad], good=[good])

    raw = ask(stack, "bad-tool", tools=[WEATHER])

    call = raw.parse().choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    assert raw.headers["x-router-validation"].startswith("tool_args: ")
    assert "Paris" not in raw.headers["x-router-validation"]
    assert stack.line(raw.headers["x-router-request-id"])["escalations"][0]["validator"] == "tool_args"


def test_a_truncated_answer_escalates(stack: AnswerStack) -> None:
    stack.app.script(
        "cut", cheap=[Answer("The answer is", finish="length")], good=[Answer("The answer is 42.")]
    )

    raw = ask(stack, "cut", max_tokens=3)

    assert raw.parse().choices[0].message.content == "The answer is 42."
    assert raw.headers["x-router-validation"].startswith("truncated: ")


def test_a_second_choice_that_fails_escalates_the_request(stack: AnswerStack) -> None:
    stack.app.script(
        "n2", cheap=[Answer('{"a": 1}', choices=2, others="nope")], good=[Answer('{"b": 2}', choices=2)]
    )

    raw = ask(stack, "n2", n=2, **JSON_MODE)

    assert [json.loads(c.message.content) for c in raw.parse().choices] == [{"b": 2}, {"b": 2}]
    assert stack.line(raw.headers["x-router-request-id"])["escalations"][0]["validator"] == "json"


def test_validation_failures_never_open_a_breaker(stack: AnswerStack) -> None:
    stack.app.script("always-bad", cheap=[Answer("{")], good=[Answer("{}")])
    for _ in range(5):  # more than failure_threshold (2) within the window
        assert ask(stack, "always-bad", **JSON_MODE).headers["x-router-model"] == "good"

    breakers = stack.router.get("/v1/router/status").json()["breakers"]

    assert breakers["cheap"] == {"provider": "closed", "model": "closed"}
    assert len(stack.app.calls("always-bad", "cheap")) == 5  # asked first every time


def test_when_the_escalation_tier_fails_the_answer_in_hand_is_served(stack: AnswerStack) -> None:
    cheap = Answer("{half")
    stack.app.script("no-rescue", cheap=[cheap], good=[Answer(status=503)])

    raw = ask(stack, "no-rescue", **JSON_MODE)

    assert raw.parse().choices[0].message.content == "{half"
    assert raw.headers["x-router-model"] == "cheap"
    assert raw.headers["x-router-validation"].startswith("json: ")
    assert "x-router-escalated-from" not in raw.headers
    assert micro(raw.headers["x-router-cost-usd"]) == cost("cheap", cheap)
    line = stack.line(raw.headers["x-router-request-id"])
    assert line["outcome"] == "ok"
    assert line["validation"].startswith("json: ")
    assert [a["model"] for a in line["attempts"]] == ["cheap", "good"]
    assert line["cost_micro_usd"] == cost("cheap", cheap)


def test_a_cascade_escalates_step_by_step_and_prices_every_answer(stack: AnswerStack) -> None:
    cheap, mid, good = Answer("{", completion_tokens=3), Answer("{{"), Answer('{"done": 1}')
    stack.app.script("steps", cheap=[cheap], mid=[mid], good=[good])

    raw = ask(stack, "steps", model="relay", **JSON_MODE)

    assert json.loads(raw.parse().choices[0].message.content) == {"done": 1}
    line = stack.line(raw.headers["x-router-request-id"])
    assert [(e["tier"], e["model"], e["to"]) for e in line["escalations"]] == [
        ("relay", "cheap", "standard"),
        ("standard", "mid", "premium"),
    ]
    assert line["cost_micro_usd"] == cost("cheap", cheap) + cost("mid", mid) + cost("good", good)
    assert raw.headers["x-router-escalated-from"] == "relay"


def test_a_streamed_request_passes_through_unchecked_without_hold(stack: AnswerStack) -> None:
    stack.app.script("stream-pass", cheap=[Answer("{nope")], good=[Answer("{}")])

    with client(stack).chat.completions.with_streaming_response.create(
        model="budget",
        messages=[{"role": "user", "content": "hi [script=stream-pass]"}],
        stream=True,
        **JSON_MODE,
    ) as response:
        text = "".join(c.choices[0].delta.content or "" for c in response.parse() if c.choices)
        request_id = response.headers["x-router-request-id"]

    assert text == "{nope"
    line = stack.line(request_id)
    assert "cascade" not in line
    assert stack.app.calls("stream-pass", "good") == []


def test_a_schema_that_cannot_be_checked_passes_and_is_counted_in_status(stack: AnswerStack) -> None:
    """A response schema the router will not compile (a remote `$ref`) lets the answer pass —
    and the status endpoint says how many checks could not run, so it is never silent."""
    stack.app.script("remote-ref", cheap=[Answer('{"a": 1}')], good=[Answer("{}")])
    before = stack.router.get("/v1/router/status").json()["schema_checks"]
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    raw = ask(stack, "remote-ref", response_format=fmt)

    assert raw.headers["x-router-model"] == "cheap"
    after = stack.router.get("/v1/router/status").json()["schema_checks"]
    assert after["uncheckable"] == before["uncheckable"] + 1
    assert sum(after["reasons"].values()) == sum(before["reasons"].values()) + 1
