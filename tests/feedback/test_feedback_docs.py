"""The feedback docs (docs/quality-loop.md "## Feedback", docs/http-api.md "## POST /v1/feedback")
show what the real router does: the rules block loads, the labels are the router's, and each
documented body gets the documented answer and feedback line (the request id being the one of a
real answer)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.quality.feedback import LABELS
from tier_router.routing.loader import parse_rules

from tests.feedback.support import Answered, StoreView, chat, post, rules, sqlite_view
from tests.support.answer_script import Answer, AnswerStack, answer_rules, answer_stack
from tests.support.clients import wait_until
from tests.support.stack import sqlite_url

pytestmark = pytest.mark.integration
DOCS = Path(__file__).resolve().parents[2] / "docs"
KEY = "rk-feedback-docs-team-a-1"


def section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


LOOP = section("quality-loop.md", "## Feedback")
API = section("http-api.md", "## POST /v1/feedback")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AnswerStack, StoreView]]:
    workdir = tmp_path_factory.mktemp("feedback-docs")
    store = sqlite_url(workdir)
    with answer_stack(workdir, rules, store, env={"TIER_ROUTER_API_KEYS": f"team-a={KEY}"}) as s:
        s.app.script("ok", cheap=[Answer("fine")], mid=[Answer("fine")], good=[Answer("fine")])
        yield s, sqlite_view(store)


def answered_on(stack: tuple[AnswerStack, StoreView], rule: str, arm: str) -> Answered:
    s, view = stack
    for i in range(200):
        answer = chat(s.router.url, KEY, "ok", user=f"docs-{i}")
        if (answer.rule, answer.arm) == (rule, arm):
            view.wait_for_fact(answer.request_id)
            return answer
    raise AssertionError(f"no request landed on {rule} / {arm}")


def with_id(text: str, documented: str, real: str) -> Any:
    return json.loads(text.replace(documented, real))


def test_the_rules_block_loads() -> None:
    (block,) = blocks(LOOP, "yaml")
    parsed = parse_rules(answer_rules("http://127.0.0.1:9", **yaml.safe_load(block)), "docs/quality-loop.md")
    assert parsed.spec.quality.feedback.enabled
    assert parsed.spec.quality.feedback.window_days == 7


def test_the_labels_are_the_routers() -> None:
    rows = re.findall(r"^\| `(\w+)` \| ([\d.]+) \|$", LOOP, flags=re.M)
    assert {label: float(score) for label, score in rows} == LABELS


def test_the_documented_label_gets_the_documented_answer_and_line(stack) -> None:
    s, _ = stack
    (request,) = blocks(LOOP, "http")
    answer_block, line_block = blocks(LOOP, "json")
    body = json.loads(request.strip().splitlines()[-1])
    documented = body["request_id"]
    real = answered_on(stack, "short", "exp/control")

    response = post(s.router.url, KEY, {**body, "request_id": real.request_id})

    assert response.status_code == 200
    assert response.json() == with_id(answer_block, documented, real.request_id)
    expected_line = with_id(line_block, documented, real.request_id)

    def logged() -> list[dict[str, Any]]:
        records = [json.loads(x) for x in s.router.stdout_lines() if x.startswith('{"type":"feedback"')]
        return [r for r in records if r["request_id"] == real.request_id]

    wait_until(logged, 5, "the feedback line")
    (line,) = logged()
    line.pop("ts")
    assert line == expected_line


def test_the_http_api_example(stack) -> None:
    s, _ = stack
    body_block, answer_block = blocks(API, "json")
    body = json.loads(body_block)
    real = answered_on(stack, "treated", "exp/treat")

    response = post(s.router.url, KEY, {**body, "request_id": real.request_id})

    assert response.status_code == 200
    assert response.json() == with_id(answer_block, body["request_id"], real.request_id)
