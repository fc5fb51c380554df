"""docs/tracing.md's picture of a trace is what the router records: a request for `auto` whose
first model's provider refuses the connection and whose second answers (span names, kinds and
the attributes the picture names)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.support.loopback import free_port
from tests.support.router_app import Apps, app_settings, build_app
from tests.tracing.conftest import KEY_ENV, SECRET

PAGE = Path(__file__).resolve().parents[2] / "docs" / "tracing.md"


def picture() -> list[tuple[str, str, dict[str, str]]]:
    """The first fenced block: (span name, kind, {attribute: value}) per line."""
    block = PAGE.read_text(encoding="utf-8").split("```\n", 2)[1]
    lines = []
    for line in block.splitlines():
        name, kind, rest = re.fullmatch(r"[├└─ ]*(chat \S+)\s+(SERVER|CLIENT)\s+(.*)", line).groups()
        attrs = dict(re.findall(r"([a-z_.]+) ([a-z_0-9]+)(?:,|$)", rest.split(":", 1)[-1]))
        lines.append((name, kind, attrs))
    return lines


def rules(first: str, second: str) -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {
            "down": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{free_port()}/v1",
                "api_key_env": KEY_ENV,
            },
            "good": {"kind": "mock", "base_url": "mock://good"},
        },
        "models": {
            "first": {"provider": "down", "id": first, "price": {"input": 1.0, "output": 2.0}},
            "second": {"provider": "good", "id": second, "price": {"input": 1.0, "output": 4.0}},
        },
        "tiers": {"main": ["first", "second"]},
        "default_tier": "main",
    }


async def test_the_pictured_trace_is_recorded(apps: Apps) -> None:
    (server_name, server_kind, _), (first_name, first_kind, first_attrs), (second_name, second_kind, _) = (
        picture()
    )
    assert (server_kind, first_kind, second_kind) == ("SERVER", "CLIENT", "CLIENT")
    exporter = InMemorySpanExporter()
    app = build_app(
        rules(first_name.removeprefix("chat "), second_name.removeprefix("chat ")),
        settings=app_settings(),
        keys={KEY_ENV: SECRET},
        span_processor=SimpleSpanProcessor(exporter),
    )
    sdk = openai.AsyncOpenAI(
        base_url="http://router/v1",
        api_key="router-key-123456789",
        http_client=apps.client(app),
        max_retries=0,
    )
    try:
        await sdk.chat.completions.create(
            model=server_name.removeprefix("chat "), messages=[{"role": "user", "content": "hi"}]
        )
        await app.gateway.lifecycle.drainer.drain()
    finally:
        await app.gateway.client.aclose()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {server_name, first_name, second_name}
    assert spans[server_name].kind is SpanKind.SERVER
    assert spans[first_name].kind is SpanKind.CLIENT
    assert spans[second_name].kind is SpanKind.CLIENT
    recorded = dict(spans[first_name].attributes or {})
    assert first_attrs, "the picture names the failed attempt's attributes"
    for name, value in first_attrs.items():
        assert recorded.get(name) == value, (name, recorded.get(name))
    assert spans[first_name].end_time <= spans[second_name].start_time
