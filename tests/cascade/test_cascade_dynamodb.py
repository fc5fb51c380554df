"""Issue 15: an escalated request's two answers settle on DynamoDB (moto server) as on SQLite:
the ledger, the budget and the per-tier / per-model results count both, exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack, cost
from tests.support.clients import wait_until
from tests.support.moto_process import moto_process
from tests.support.stack import ROUTER_KEY, dynamodb_url

pytestmark = pytest.mark.integration


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json"]}},
            "standard": ["mid"],
            "premium": ["good"],
        },
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with (
        moto_process() as moto,
        answer_stack(tmp_path_factory.mktemp("cascade-ddb"), rules, dynamodb_url(moto)) as s,
    ):
        yield s


def test_an_escalated_request_settles_both_answers_once_on_dynamodb(stack: AnswerStack) -> None:
    cheap, good = Answer("{no", completion_tokens=6), Answer('{"ok": 1}', completion_tokens=4)
    stack.app.script("ddb", cheap=[cheap], good=[good])
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    before = stack.router.ledger()

    raw = client.chat.completions.with_raw_response.create(
        model="budget",
        messages=[{"role": "user", "content": "hi [script=ddb]"}],
        response_format={"type": "json_object"},
    )

    assert json.loads(raw.parse().choices[0].message.content) == {"ok": 1}
    both = cost("cheap", cheap) + cost("good", good)
    wait_until(lambda: stack.router.ledger().requests == before.requests + 1, 10, "the request to settle")
    after = stack.router.ledger()
    assert after.total - before.total == both
    assert after.budget_spent - before.budget_spent == both  # type: ignore[operator]
    assert after.budget_committed == after.budget_spent
    results = after.raw["spend"]["results"]
    assert results["tier"]["budget"]["requests"] == 1
    assert results["tier"]["budget"]["escalation_rate"] == 1.0
    assert results["model"]["cheap"]["requests"] == 1
    assert results["model"]["good"]["requests"] == 1
