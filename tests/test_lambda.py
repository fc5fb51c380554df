"""The Lambda entry point serves realistic Function URL and HTTP API v2 events (Mangum, buffered).

The handler module builds the app at import from the environment, as Lambda's init phase
would, so each test imports it fresh with the demo rules (mock providers, no keys).
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.support.demo import unjudged_demo

EVENTS = Path(__file__).parent / "lambda_events"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def lambda_handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TIER_ROUTER_RULES", str(unjudged_demo()))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)
    module = importlib.import_module("tier_router.lambda_entry")
    return module.lambda_handler


def invoke(handler: Any, name: str) -> dict[str, Any]:
    event = json.loads((EVENTS / name).read_text())
    context = SimpleNamespace(
        aws_request_id="req-1", function_name="tier-router", get_remaining_time_in_millis=lambda: 60000
    )
    return handler(event, context)


def body_of(result: dict[str, Any]) -> str:
    body = result["body"]
    return base64.b64decode(body).decode() if result.get("isBase64Encoded") else body


def test_function_url_event_with_base64_body(lambda_handler: Any) -> None:
    result = invoke(lambda_handler, "function_url_chat_base64.json")
    assert result["statusCode"] == 200
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert headers["x-router-rule"] == "hard-question"
    assert headers["x-router-model"] == "large"
    completion = json.loads(body_of(result))
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "mock-large"
    assert "Why is the sky blue?" in completion["choices"][0]["message"]["content"]


def test_http_api_stream_request_returns_complete_sse_body(lambda_handler: Any) -> None:
    result = invoke(lambda_handler, "http_api_v2_chat_stream.json")
    assert result["statusCode"] == 200
    headers = {k.lower(): v for k, v in result["headers"].items()}
    assert headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in body_of(result).split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.endswith("You said: hi")
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_get_models(lambda_handler: Any) -> None:
    result = invoke(lambda_handler, "function_url_models.json")
    assert result["statusCode"] == 200
    ids = [m["id"] for m in json.loads(body_of(result))["data"]]
    assert ids[:4] == ["auto", "budget", "standard", "premium"]


def test_bad_json_is_an_openai_error(lambda_handler: Any) -> None:
    result = invoke(lambda_handler, "function_url_bad_json.json")
    assert result["statusCode"] == 400
    error = json.loads(body_of(result))["error"]
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"
