"""Issue 15, the adversary: clients and models that try to break the cascade's promises.

The real router (default configuration: SQLite store, logging on) in front of a scripted
provider (`tests.support.answer_script`); plain (`budget`) and held-back (header `x-hold`)
cascades to the premium tier.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
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
        tiers={
            "budget": {"models": ["cheap"], "cascade": {"to": "premium", "on": ["json", "refusal"]}},
            "standard": ["mid"],
            "premium": ["good"],
        },
        rules=[
            {
                "name": "held",
                "tier": "budget",
                "when": {"header": {"name": "x-hold", "present": True}},
                "cascade": {"to": "premium", "on": ["json", "refusal"], "stream": "hold"},
            }
        ],
        breakers={"failure_threshold": 2, "window_s": 60, "recovery_s": 60, "recovery_max_s": 60},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("adversary"), rules) as stack:
        yield stack


def body(script: str, **params: Any) -> dict[str, Any]:
    return {"model": "budget", "messages": [{"role": "user", "content": f"hi [script={script}]"}], **params}


def auth(**extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {ROUTER_KEY}", **extra}


def test_a_client_that_leaves_while_the_escalation_answers_still_pays_for_the_first_answer(
    stack: AnswerStack,
) -> None:
    """The cheap answer failed and was paid for; the client leaves while the premium tier is
    still answering. The request is recorded once, and the cheap answer's cost is on it (it
    used to be lost: the escalation was recorded only once the premium answer came)."""
    cheap = Answer("{not json", completion_tokens=40)
    stack.app.script("leave-plain", cheap=[cheap], good=[Answer('{"ok": 1}', delay_s=3.0)])
    before = stack.router.ledger()
    gone_before = sum(line["outcome"] == "client_gone" for line in stack.router.chat_lines())

    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            stack.router.url + "/v1/chat/completions",
            json=body("leave-plain", response_format=JSON_MODE),
            headers=auth(),
            timeout=1.0,
        )

    def gone() -> list[dict[str, Any]]:
        return [line for line in stack.router.chat_lines() if line["outcome"] == "client_gone"]

    wait_until(lambda: len(gone()) == gone_before + 1, 15, "the abandoned request's log line")
    line = gone()[-1]
    assert line["status"] == 499
    assert line["cost_micro_usd"] == cost("cheap", cheap)
    assert line["model"] == "cheap"
    assert line["validation"].startswith("json: ")
    wait_until(lambda: stack.router.ledger().requests == before.requests + 1, 15, "the request counted")
    after = stack.router.ledger()
    assert after.total - before.total == cost("cheap", cheap)
    assert after.budget_committed == after.budget_spent
