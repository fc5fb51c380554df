"""Issue 16: sampled judging on requests real clients send that the plain path does not: `n: 2`
with a tool-call history and an image, and an SDK that closes a sampled stream early.

The real router (`tier-router serve`, SQLite, logging on), scripted providers and judge, the
openai SDK; every request here is sampled (`sample: 1`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.judging.judge_script import JudgeStack, judge_stack, judging_rules, prefers
from tests.support.answer_script import Answer
from tests.support.clients import wait_until
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def rules(url: str) -> dict[str, Any]:
    return judging_rules(
        url,
        {"sample": 1.0, "budget_usd": 10, "max_pending": 100},
        judge_total_s=1.0,
        tiers={"budget": ["cheap"], "standard": ["mid"], "premium": ["good"]},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JudgeStack]:
    with judge_stack(tmp_path_factory.mktemp("hard"), rules) as stack:
        yield stack


def client(stack: JudgeStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)


def test_n_two_with_a_tool_call_history_and_an_image_is_judged_on_its_first_choice(
    stack: JudgeStack,
) -> None:
    served = Answer("FIRST-CHOICE", choices=2, others="SECOND-CHOICE", completion_tokens=8)
    stack.app.script("hard", cheap=[served], good=[Answer("REFERENCE-ANSWER", completion_tokens=9)])
    stack.app.judges["hard"] = prefers("FIRST-CHOICE")
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "[script=hard] weather in Oslo?"}, IMAGE]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "4 degrees, rain"},
    ]
    raw = client(stack).chat.completions.with_raw_response.create(model="budget", messages=messages, n=2)
    reply = raw.parse()
    assert [c.message.content for c in reply.choices] == ["FIRST-CHOICE", "SECOND-CHOICE"]  # untouched

    line = stack.judgement(raw.headers["x-router-request-id"])
    assert line["verdict"] == "win"
    assert line["error"] is None
    (reference,) = stack.app.calls("hard", "good")
    assert "n" not in reference  # one reference answer, whatever the client asked
    assert reference["messages"] == messages  # the same history, image and tool call included
    prompts = stack.app.judge_prompts("hard")
    assert len(prompts) == 2
    for prompt in prompts:
        assert "FIRST-CHOICE" in prompt
        assert "SECOND-CHOICE" not in prompt  # the first choice is the one judged
        assert '[tool calls] [{"id": "c1"' in prompt  # the tool call the conversation made
        assert '"name": "weather"' in prompt
        assert "[image_url]" in prompt  # the image, named


def test_a_stream_the_sdk_closes_early_is_recorded_once_and_never_judged(stack: JudgeStack) -> None:
    long = Answer("x" * 400, completion_tokens=100, piece=4, pause_s=0.01)
    stack.app.script("early", cheap=[long], good=[Answer("REFERENCE")])
    since = len(stack.router.request_lines())
    messages = [{"role": "user", "content": "[script=early] tell me a long story"}]
    with client(stack).chat.completions.with_streaming_response.create(
        model="budget", messages=messages, stream=True
    ) as response:
        rid = response.headers["x-router-request-id"]
        for _chunk in response.parse():
            break  # the application has what it wanted: the SDK closes the stream

    def line() -> dict[str, Any] | None:
        found = [r for r in stack.router.chat_lines(since) if r["request_id"] == rid]
        return found[0] if found else None

    wait_until(lambda: line() is not None, 15, "the request line of the closed stream")
    assert line()["outcome"] == "client_gone"
    assert [r["request_id"] for r in stack.router.chat_lines(since)].count(rid) == 1
    stack.router.stop()  # drains: a judgement would have been started and logged by now
    assert stack.app.calls("early", "good") == []  # no reference asked
    assert [j for j in stack.judgements() if j["request_id"] == rid] == []
