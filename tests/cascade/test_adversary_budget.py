"""Issue 15, the adversary: a cascade chain and `n` against the hard cap.

A cap of $0.20 and `max_tokens: 10000` (worst cases: cheap $0.04, mid $0.08, good $0.40 per
choice). `relay` (cheap) cascades to `standard` (mid), which cascades to `premium` (good): the
reservation must cover every step of the chain, not only the first escalation.
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
            "relay": {"models": ["cheap"], "cascade": {"to": "standard", "on": ["json"]}},
            "short": {"models": ["cheap"], "cascade": {"to": "middle", "on": ["json"]}},
            "middle": ["mid"],
            "standard": {"models": ["mid"], "cascade": {"to": "premium", "on": ["json"]}},
            "premium": ["good"],
            "budget": ["cheap"],
        },
        budgets={"daily_usd": 0.20},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("adversary-budget"), rules) as stack:
        yield stack


def ask(stack: AnswerStack, model: str, **params: Any) -> Any:
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    return client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "hi [script=chain]"}],
        max_tokens=10_000,
        response_format={"type": "json_object"},
        **params,
    )


def test_the_reservation_covers_every_step_of_a_cascade_chain(stack: AnswerStack) -> None:
    stack.app.script("chain", cheap=[Answer('{"a": 1}')], mid=[Answer("{}")], good=[Answer("{}")])

    with pytest.raises(openai.RateLimitError) as refused:  # $0.04 + $0.08 + $0.40 > $0.20
        ask(stack, "relay")
    assert refused.value.code == "budget_exceeded"
    assert ask(stack, "short").headers["x-router-model"] == "cheap"  # $0.04 + $0.08 fits
    assert stack.app.calls("chain", "cheap") != []


def test_the_reservation_of_every_step_counts_each_choice(stack: AnswerStack) -> None:
    stack.app.script("chain", cheap=[Answer('{"a": 1}', choices=2)], mid=[Answer("{}", choices=2)])

    with pytest.raises(openai.RateLimitError):  # 2 × ($0.04 + $0.08) > $0.20
        ask(stack, "short", n=2)
    assert ask(stack, "budget", n=2).headers["x-router-model"] == "cheap"  # no cascade: 2 × $0.04
