"""Issue 15: an experiment's arm (and a rollout's in/out) is in the decision, the headers, the log
line and the ledger — the same arm in all four, for every request, on the real router.

Rules: an experiment `cheap-chat` (arms `control` 50%, `cascade` 50%) gating a short-chat rule,
and a 10% rollout of a rule for long prompts. Requests come from distinct `user`s (the sticky id).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack
from tests.support.clients import wait_until
from tests.support.stack import ROUTER_KEY

pytestmark = pytest.mark.integration


def rules(url: str) -> dict[str, Any]:
    return answer_rules(
        url,
        experiments={"cheap-chat": {"arms": {"control": 50, "cascade": 50}}},
        rules=[
            {
                "name": "short-cascade",
                "arm": "cheap-chat/cascade",
                "tier": "budget",
                "cascade": {"to": "premium", "on": ["json"]},
                "when": {"last_user_tokens": {"max": 25}},
            },
            {"name": "short", "tier": "standard", "when": {"last_user_tokens": {"max": 25}}},
            {
                "name": "long-rollout",
                "rollout": "10%",
                "tier": "premium",
                "when": {"last_user_chars": {"min": 200}},
            },
        ],
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnswerStack]:
    with answer_stack(tmp_path_factory.mktemp("arms"), rules) as stack:
        yield stack


def test_the_arm_is_the_same_in_headers_log_and_ledger(stack: AnswerStack) -> None:
    stack.app.script("arms", cheap=[Answer('{"a": 1}')], mid=[Answer("fine")], good=[Answer("fine")])
    before = stack.router.ledger()
    seen: dict[str, str] = {}
    with httpx.Client(headers={"authorization": f"Bearer {ROUTER_KEY}"}, timeout=20) as client:
        for i in range(80):
            long = i % 2 == 1
            text = ("tell me a long story " * 12 if long else "hi") + " [script=arms]"
            body = {"model": "auto", "messages": [{"role": "user", "content": text}], "user": f"u{i}"}
            response = client.post(stack.router.url + "/v1/chat/completions", json=body)
            assert response.status_code == 200
            arm = f"{response.headers['x-router-experiment']}/{response.headers['x-router-arm']}"
            rule = response.headers["x-router-rule"]
            if long:
                assert arm.startswith("rollout:long-rollout/")
                assert (rule == "long-rollout") == arm.endswith("/in")
            else:
                assert arm in ("cheap-chat/control", "cheap-chat/cascade")
                assert rule == ("short-cascade" if arm.endswith("/cascade") else "short")
            seen[response.headers["x-router-request-id"]] = arm

    counts = Counter(seen.values())
    assert 8 <= counts["cheap-chat/cascade"] <= 32  # 40 short requests, half by hash
    assert counts["rollout:long-rollout/in"] <= 12  # 40 long ones, 10% by hash
    wait_until(lambda: stack.router.ledger().requests == before.requests + 80, 10, "every request to settle")
    wait_until(lambda: len(logged(stack, seen)) == 80, 10, "every request's log line")
    lines = logged(stack, seen)
    assert {rid: f"{line['experiment']}/{line['arm']}" for rid, line in lines.items()} == seen
    arms = stack.router.ledger().raw["spend"]["results"]["arm"]
    assert {arm: row["requests"] for arm, row in arms.items()} == dict(counts)
    assert "u1" not in json.dumps(list(lines.values()))  # the sticky id itself is never logged


def logged(stack: AnswerStack, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {line["request_id"]: line for line in stack.router.request_lines() if line["request_id"] in ids}
