"""Tracing attacked: an embeddings request's spans (names, attributes, nothing of its input or
of a provider's error text that quotes it), malformed trace headers, span processors and
exporters that raise or block, and tracing off after an embeddings request."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import pytest
import respx
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.router_app import Apps, app_settings, build_app
from tests.tracing.test_spans import assert_no_content, children, one_server
from tests.tracing.test_switch import run

pytestmark = pytest.mark.anyio
INPUT = "the confidential paragraph about the harbour master's salary"
KEY_ENV, SECRET = "EMBED_KEY", "sk-embed-tracing-0123456789abcdef"
UPSTREAM = "https://embed.test/v1"
RULES: dict[str, Any] = {
    "version": 1,
    "providers": {
        "remote": {
            "kind": "openai",
            "base_url": UPSTREAM,
            "api_key_env": KEY_ENV,
            "retry": {"max_attempts": 1},
        },
        "local": {"kind": "mock", "base_url": "mock://local"},
    },
    "models": {
        "chatty": {"provider": "local", "id": "mock-chat", "price": {"input": 1.0, "output": 2.0}},
        "remote-embed": {
            "provider": "remote",
            "id": "te-remote",
            "kind": "embedding",
            "price": {"input": 0.1},
        },
        "local-embed": {
            "provider": "local",
            "id": "mock-embed",
            "kind": "embedding",
            "price": {"input": 0.02},
        },
    },
    "tiers": {"chat": ["chatty"], "vectors": ["remote-embed", "local-embed"]},
    "default_tier": "chat",
    "embeddings": {"default_tier": "vectors"},
}


def app_with(apps: Apps, processor: SpanProcessor) -> tuple[Any, openai.AsyncOpenAI]:
    app = build_app(RULES, settings=app_settings(), keys={KEY_ENV: SECRET}, span_processor=processor)
    http = apps.client(app)
    return app, openai.AsyncOpenAI(
        base_url="http://router/v1", api_key="k" * 20, http_client=http, max_retries=0
    )


async def settled(app: Any, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    await app.gateway.lifecycle.drainer.drain()
    return list(exporter.get_finished_spans())


def quoting(status: int) -> httpx.Response:
    """A provider's error that quotes the request's input and the key it was sent."""
    return httpx.Response(status, json={"error": {"message": f"cannot embed {INPUT!r} with key {SECRET}"}})


async def test_an_embeddings_fallback_is_traced_without_its_input_or_the_providers_words(apps: Apps) -> None:
    exporter = InMemorySpanExporter()
    app, sdk = app_with(apps, SimpleSpanProcessor(exporter))
    with respx.mock(assert_all_called=True) as mock:
        mock.post(UPSTREAM + "/embeddings").mock(return_value=quoting(503))
        raw = await sdk.embeddings.with_raw_response.create(model="auto", input=[INPUT, "second"])
    reply = raw.parse()
    assert len(reply.data) == 2
    spans = await settled(app, exporter)

    server = one_server(spans)
    assert server.name == "embeddings auto"
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.request.model"] == "auto"
    assert attributes["gen_ai.response.model"] == "mock-embed"
    assert attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert "gen_ai.usage.output_tokens" not in attributes
    assert attributes["tier_router.tier"] == "vectors"
    assert attributes["tier_router.model"] == "local-embed"
    assert attributes["tier_router.attempts"] == 2
    assert attributes["tier_router.cost_usd"] > 0
    assert attributes["tier_router.request_id"] == raw.headers["x-router-request-id"]
    failed, served = children(spans, server)
    assert (failed.name, served.name) == ("embeddings te-remote", "embeddings mock-embed")
    assert failed.kind is served.kind is SpanKind.CLIENT
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "http_503"
    assert dict(failed.attributes or {})["tier_router.fallback_reason"] == "http_503"
    assert_no_content(spans, INPUT, "cannot embed", "second")


async def test_a_refused_embedding_keeps_its_input_out_of_the_spans(apps: Apps) -> None:
    """A provider's 400 quoting the input goes back to the client (its own words), never into a span."""
    exporter = InMemorySpanExporter()
    app, sdk = app_with(apps, SimpleSpanProcessor(exporter))
    with respx.mock(assert_all_called=True) as mock:
        mock.post(UPSTREAM + "/embeddings").mock(return_value=quoting(400))
        with pytest.raises(openai.BadRequestError):
            await sdk.embeddings.create(model="remote-embed", input=INPUT)
    with pytest.raises(openai.NotFoundError):
        await sdk.embeddings.create(model=INPUT, input="x")  # the input as a model name
    spans = await settled(app, exporter)
    assert len([s for s in spans if s.kind is SpanKind.SERVER]) == 2
    assert_no_content(spans, INPUT)


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-zzzz-1111-01",
        "00-" + "0" * 32 + "-" + "0" * 16 + "-01",  # all-zero ids are invalid
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff is forbidden
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + "x" * 10_000,
        "é",
    ],
)
async def test_a_malformed_traceparent_starts_a_new_trace(apps: Apps, traceparent: str) -> None:
    exporter = InMemorySpanExporter()
    app, _ = app_with(apps, SimpleSpanProcessor(exporter))
    client = apps.client(app)
    headers = {"traceparent": traceparent.encode("utf-8"), "tracestate": b"\xff\x00=bad"}
    reply = await client.post("/v1/embeddings", json={"model": "local-embed", "input": "x"}, headers=headers)
    assert reply.status_code == 200, reply.text
    server = one_server(await settled(app, exporter))
    assert server.parent is None
    assert server.context.trace_id != 0


class Raising(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("the processor broke")


class Blocking(SpanExporter):
    """An exporter stuck on a collector that never answers, until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


class Failing(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector down")


@pytest.mark.parametrize("kind", ["raising processor", "failing exporter", "blocked batch exporter"])
async def test_a_broken_span_pipeline_never_fails_or_stalls_a_request(
    apps: Apps, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocking = Blocking()
    processor = {
        "raising processor": lambda: Raising(),
        "failing exporter": lambda: SimpleSpanProcessor(Failing()),
        "blocked batch exporter": lambda: BatchSpanProcessor(blocking, schedule_delay_millis=1),
    }[kind]()
    app, sdk = app_with(apps, processor)
    try:
        for i in range(20):  # well past one batch: the export is stuck on the first
            chat = sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": f"hi {i}"}]
            )
            vectors = sdk.embeddings.create(model="auto", input=f"text {i}")
            answered, embedded = await asyncio.wait_for(asyncio.gather(chat, vectors), 30)
            assert answered.choices[0].message.content
            assert len(embedded.data) == 1
        await asyncio.wait_for(app.gateway.lifecycle.drainer.drain(), 30)
    finally:
        blocking.release.set()
    lines = [
        json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"event":"request"')
    ]
    assert len(lines) == 40
    assert {line["outcome"] for line in lines} == {"ok"}


EMBED_ONE = """
import asyncio, json, sys
import httpx
from tier_router.app import create_app
from tier_router.settings import Settings

app = create_app(Settings.from_env())

async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
        reply = await client.post("/v1/embeddings", json={"model": "auto", "input": ["a", "b"]})
        assert reply.status_code == 200, reply.text
        reply = await client.get("/v1/models/embed")
        assert reply.status_code == 200, reply.text
    await app.gateway.drain()

asyncio.run(main())
traced = [m for m in sys.modules if m.startswith(("opentelemetry", "tier_router.tracing"))]
print(json.dumps(sorted(traced)))
"""


def test_off_an_embeddings_request_imports_nothing_of_opentelemetry() -> None:
    done = run(EMBED_ONE)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    on = run(EMBED_ONE, TIER_ROUTER_OTEL="1", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert on.returncode == 0, on.stderr
    assert "opentelemetry.sdk.trace" in json.loads(on.stdout.splitlines()[-1])  # the check can fail
