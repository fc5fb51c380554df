"""The spans reach an OTLP/HTTP collector: the Lambda handler, with `TIER_ROUTER_OTEL=1` and
the standard `OTEL_*` variables, has posted them to a fake collector on 127.0.0.1 by the time
the invocation returns (the container may freeze right after); a collector that never
answers delays the invocation by the bounded flush at most, and the response is unchanged."""

from __future__ import annotations

import base64
import importlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.demo import unjudged_demo
from tests.tracing.collector import FakeCollector, attributes

EVENTS = Path(__file__).parents[1] / "lambda_events"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def lambda_handler(monkeypatch: pytest.MonkeyPatch, collector: FakeCollector, **env: str) -> Any:
    for name, value in {
        "TIER_ROUTER_RULES": str(unjudged_demo()),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_OTEL": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "router-under-test",
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)
    return importlib.import_module("tier_router.lambda_entry").lambda_handler


def invoke(handler: Any) -> dict[str, Any]:
    event = json.loads((EVENTS / "function_url_chat_base64.json").read_text())
    event["headers"]["traceparent"] = f"00-{TRACE_ID}-{PARENT_ID}-01"
    context = SimpleNamespace(
        aws_request_id="req-otel-1", function_name="tier-router", get_remaining_time_in_millis=lambda: 60000
    )
    return handler(event, context)


@pytest.fixture(autouse=True)
def fresh_handler_modules() -> Iterator[None]:
    """The handler module builds its app at import: import it anew, and leave no traced app behind."""
    yield
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    yield fake
    fake.close()


def test_lambda_invocation_posts_its_spans_before_returning(
    monkeypatch: pytest.MonkeyPatch, collector: FakeCollector
) -> None:
    handler = lambda_handler(monkeypatch, collector)
    result = invoke(handler)
    assert result["statusCode"] == 200
    body = base64.b64decode(result["body"]) if result.get("isBase64Encoded") else result["body"].encode()
    answer = json.loads(body)["choices"][0]["message"]["content"]

    assert collector.posts, "nothing was posted before the invocation returned"
    path, content_type, _ = collector.posts[0]
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    spans = collector.spans()
    by_name = {span.name: (resource, span) for resource, span in spans}
    assert set(by_name) == {"chat auto", "chat mock-large"}
    resource, server = by_name["chat auto"]
    assert resource["service.name"] == "router-under-test"
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.trace_id.hex() == TRACE_ID
    assert server.parent_span_id.hex() == PARENT_ID
    server_attrs = attributes(server)
    assert server_attrs["tier_router.request_id"] == "req-otel-1"  # Lambda's request id
    assert server_attrs["tier_router.rule"] == "hard-question"
    assert server_attrs["gen_ai.response.model"] == "mock-large"
    assert server_attrs["gen_ai.usage.output_tokens"] > 0
    _, attempt = by_name["chat mock-large"]
    assert attempt.kind == Span.SPAN_KIND_CLIENT
    assert attempt.parent_span_id == server.span_id
    for _, span in spans:  # no content on the wire either
        assert all("sky" not in str(v) and answer not in str(v) for v in attributes(span).values())


def test_a_collector_that_never_answers_does_not_hold_the_response(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    silent = FakeCollector(hang=True)
    try:
        handler = lambda_handler(monkeypatch, silent, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="5")
        with caplog.at_level(logging.WARNING, logger="tier_router"):
            result = invoke(handler)
        assert result["statusCode"] == 200
        assert silent.posts  # the export was under way...
        assert "exporting spans took over" in caplog.text  # ...and the invocation did not wait for it
    finally:
        silent.close()
