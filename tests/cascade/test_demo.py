"""Issue 15: the demo rules (`rules/local-demo.yaml`, mock providers only) show a cascade and a
weighted split working: the real router on its default store, the real `openai` SDK.

The `budget` tier's first model (`small`, on mock-fast) gets 40% of JSON and tool-call answers
wrong on purpose; the tier's cascade sends those to `premium`, so every answer the client gets
is valid. The tier's split sends callers to `small` or `tiny` by a sticky hash of the request's
`user` (ivan → tiny, alice → small: see rules/local-demo.examples.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from tests.support.router_process import Router, running_router
from tests.support.stack import ROUTER_KEY, sqlite_url

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml"
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    workdir = tmp_path_factory.mktemp("demo")
    rules = yaml.safe_load(DEMO.read_text())
    with running_router(workdir, rules, key=ROUTER_KEY, store_url=sqlite_url(workdir)) as router:
        yield router


def client(router: Router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)


def test_the_cascade_rescues_every_flawed_json_answer(router: Router) -> None:
    escalated = 0
    for i in range(30):
        raw = client(router).chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": f"Give me item {i} as JSON."}],
            response_format={"type": "json_object"},
            user="alice",
        )
        assert isinstance(json.loads(raw.parse().choices[0].message.content), dict)
        if "x-router-escalated-from" in raw.headers:
            escalated += 1
            assert raw.headers["x-router-escalated-from"] == "budget"
            assert raw.headers["x-router-validation"].startswith("json: ")
            assert raw.headers["x-router-tier"] == "premium"
        else:
            assert raw.headers["x-router-model"] == "small"
    assert 3 <= escalated <= 24  # mock-fast's flaw_rate is 0.4 over distinct prompts


def test_the_cascade_rescues_broken_tool_calls(router: Router) -> None:
    models = set()
    for i in range(20):
        raw = client(router).chat.completions.with_raw_response.create(
            model="budget",
            messages=[{"role": "user", "content": f"Weather in city {i}?"}],
            tools=[WEATHER],
            user="alice",
        )
        (call,) = raw.parse().choices[0].message.tool_calls
        arguments = json.loads(call.function.arguments)
        assert isinstance(arguments["city"], str)
        assert isinstance(arguments["days"], int)
        models.add(raw.headers["x-router-model"])
    assert models == {"small", "large"}  # some were rescued, some were fine as they were


def test_the_split_is_sticky_per_user(router: Router) -> None:
    def first_model(user: str) -> str:
        raw = client(router).chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "hello there"}], user=user
        )
        return raw.headers["x-router-model"]

    assert {first_model("ivan") for _ in range(5)} == {"tiny"}
    assert {first_model("alice") for _ in range(5)} == {"small"}
    picks = [first_model(f"user-{i}") for i in range(60)]
    assert 1 <= picks.count("tiny") <= 20  # 10% by weight
