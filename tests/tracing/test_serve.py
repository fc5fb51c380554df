"""`tier-router serve` with `TIER_ROUTER_OTEL=1`, as a user runs it: requests from the real
`openai` SDK (one with a fallback, one streamed, both under the caller's trace) reach a fake
OTLP/HTTP collector; whatever the batch processor still holds at SIGTERM is flushed by the
shutdown, so stopping the router loses no span."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.loopback import free_port
from tests.support.router_process import running_router
from tests.tracing.collector import FakeCollector, attributes
from tests.tracing.conftest import KEY_ENV, PROMPT, SECRET, rules

pytestmark = pytest.mark.integration
ROUTER_KEY = "serve-tracing-router-key-0123"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    yield fake
    fake.close()


def test_served_requests_reach_the_collector_by_shutdown(tmp_path: Path, collector: FakeCollector) -> None:
    env = {"TIER_ROUTER_OTEL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, KEY_ENV: SECRET}
    rules_ = rules(free_port())
    with running_router(tmp_path, rules_, key=ROUTER_KEY, store_url="memory://", env=env) as router:
        client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=ROUTER_KEY, max_retries=0)
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        messages: list = [{"role": "user", "content": PROMPT}]
        client.chat.completions.create(model="fallback", messages=messages, extra_headers=headers)
        chunks = client.chat.completions.create(
            model="solo", messages=messages, stream=True, extra_headers=headers
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert router.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its shutdown

    spans = [span for _, span in collector.spans()]
    servers = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
    assert sorted(s.name for s in servers) == ["chat fallback", "chat solo"]
    for server in servers:
        assert server.trace_id.hex() == TRACE_ID
        assert server.parent_span_id.hex() == PARENT_ID
    fallback = next(s for s in servers if s.name == "chat fallback")
    attempts = sorted(
        (s for s in spans if s.parent_span_id == fallback.span_id), key=lambda s: s.start_time_unix_nano
    )
    assert [a.name for a in attempts] == ["chat gone-model-1", "chat mock-answer"]
    assert attributes(attempts[0])["error.type"] == "connect_error"
    assert attributes(attempts[0])["tier_router.fallback_reason"] == "connect_error"
    assert attributes(fallback)["tier_router.attempts"] == 2
    streamed = next(s for s in servers if s.name == "chat solo")
    assert attributes(streamed)["tier_router.stream"] is True
    assert attributes(streamed)["tier_router.outcome"] == "ok"
    for span in spans:
        assert all(PROMPT not in str(v) and SECRET not in str(v) for v in attributes(span).values())
