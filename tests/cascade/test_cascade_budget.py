"""Issue 15: the budget reservation covers the whole cascade path, so an escalation can never
take spend past the hard cap.

A cap of $0.10 and `max_tokens: 10000`: the cheap tier's worst case alone (~$0.04) fits, the
cheap tier plus its escalation to the premium tier (~$0.44) does not — so a request that may
escalate is refused before anything is sent, while the same request to the cheap model alone
(an explicit model: no cascade) goes through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"]}},
            "standard": ["mid"],
            "premium": ["good"],
        },
        budgets={"daily_usd": 0.10},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("cascade-budget"), rules) as stack:
        yield stack


def ask(stack: AnswerStack, model: str, **params: Any) -> Any:
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hi [script=cap]"}], max_tokens=10_000, **params
    )


def test_a_request_that_may_escalate_reserves_the_escalation_too(stack: AnswerStack) -> None:
    stack.app.script("cap", cheap=[Answer('{"a": 1}')], good=[Answer("{}")])

    with pytest.raises(openai.RateLimitError) as refused:
        ask(stack, "budget", response_format={"type": "json_object"})
    assert refused.value.code == "budget_exceeded"
    assert stack.app.calls("cap", "cheap") == []  # refused before anything was sent

    served = ask(stack, "cheap", response_format={"type": "json_object"})  # no cascade: cheap's worst case
    assert served.headers["x-router-model"] == "cheap"


def test_a_streamed_request_without_hold_reserves_no_escalation(stack: AnswerStack) -> None:
    """`stream: pass` (the default) never escalates a stream, so it holds only its own tier."""
    stack.app.script("cap", cheap=[Answer('{"a": 1}')], good=[Answer("{}")])
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)

    with client.chat.completions.with_streaming_response.create(
        model="budget",
        messages=[{"role": "user", "content": "hi [script=cap]"}],
        max_tokens=10_000,
        stream=True,
    ) as response:
        assert response.headers["x-router-model"] == "cheap"
        assert list(response.parse())
