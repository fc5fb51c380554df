"""The mock features a newcomer tries first, through the OpenAI SDK against the router on the
shipped demo rules (rules/local-demo.yaml): a tool call, JSON and schema-shaped JSON, `n`, a
token limit — and a mock told to fail or to be slow, which the router falls back from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
import yaml

from tests.support.clients import sync_client
from tests.support.demo import unjudged_demo
from tests.support.router_app import app_settings, build_app, production_client, serve_in_thread

KEY = "rk-demo"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
CITY = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer", "minimum": 0}},
    "required": ["name", "population"],
    "additionalProperties": False,
}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def demo() -> Iterator[openai.OpenAI]:
    rules = yaml.safe_load(unjudged_demo().read_text())
    app = build_app(
        rules, settings=app_settings(api_keys=(KEY,), log_requests=False), client=production_client()
    )
    with serve_in_thread(app) as url, sync_client(url, KEY) as client:
        yield client


def test_tools_get_a_tool_call(demo: openai.OpenAI) -> None:
    reply = demo.chat.completions.create(model="large", messages=user("Weather in Oslo?"), tools=[WEATHER])
    (choice,) = reply.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_json_object_and_json_schema_give_valid_json(demo: openai.OpenAI) -> None:
    plain = demo.chat.completions.create(
        model="large", messages=user("A city as JSON"), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(plain.choices[0].message.content or ""), dict)
    shaped = demo.chat.completions.create(
        model="large",
        messages=user("A city"),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": CITY, "strict": True},
        },
    )
    jsonschema.validate(json.loads(shaped.choices[0].message.content or ""), CITY)


def test_n_and_max_tokens(demo: openai.OpenAI) -> None:
    reply = demo.chat.completions.create(model="large", messages=user("Tell me a long story"), n=3)
    assert len(reply.choices) == 3
    assert [c.index for c in reply.choices] == [0, 1, 2]
    cut = demo.chat.completions.create(model="large", messages=user("Tell me a long story"), max_tokens=3)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens <= 3


@pytest.fixture(scope="module")
def failing_and_slow() -> Iterator[openai.OpenAI]:
    price = {"input": 0.1, "output": 0.4}
    providers = {
        "down": "mock://down?fail_rate=1",
        "slow": "mock://slow?latency_ms=5000",
        "up": "mock://up",
    }
    rules = {
        "version": 1,
        "providers": {name: {"kind": "mock", "base_url": url} for name, url in providers.items()},
        "models": {name: {"provider": name, "id": f"mock-{name}", "price": price} for name in providers},
        "tiers": {"falls-over": ["down", "up"], "too-slow": ["slow", "up"]},
        "default_tier": "falls-over",
        "rules": [],
    }
    rules["models"]["slow"]["timeouts"] = {"total": 0.2}
    app = build_app(
        rules, settings=app_settings(api_keys=(KEY,), log_requests=False), client=production_client()
    )
    with serve_in_thread(app) as url, sync_client(url, KEY) as client:
        yield client


@pytest.mark.parametrize("tier", ["falls-over", "too-slow"])
def test_a_failing_or_slow_mock_is_fallen_back_from(failing_and_slow: openai.OpenAI, tier: str) -> None:
    raw = failing_and_slow.chat.completions.with_raw_response.create(model=tier, messages=user("hi"))
    assert raw.headers["x-router-model"] == "up"
    assert int(raw.headers["x-router-attempts"]) >= 2  # a 503 may be retried once before falling back
    assert raw.parse().choices[0].message.content
