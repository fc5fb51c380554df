"""Tracing tests: the router in-process with an in-memory span exporter, talked to by the real
`openai` SDK over ASGI.

These tests need the `otel` extra (it is in `dev`): without it they fail at import, loudly,
rather than skip — a missing extra must not pass for working tracing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.loopback import free_port
from tests.support.router_app import Apps, app_settings, build_app

PROMPT = "Which colour is the sky over the quiet harbour?"
"""Searched for in every span attribute: it must be in none."""
KEY_ENV = "DOWN_API_KEY"
SECRET = "sk-tracing-test-0123456789abcdef"


def rules(down_port: int) -> dict[str, Any]:
    """`auto` → tier `solo` (one mock model); tier `fallback`: an OpenAI-compatible provider on a
    closed loopback port (connection refused) first, then the mock model."""
    return {
        "version": 1,
        "providers": {
            "down": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{down_port}/v1",
                "api_key_env": KEY_ENV,
            },
            "good": {"kind": "mock", "base_url": "mock://good"},
        },
        "models": {
            "gone": {"provider": "down", "id": "gone-model-1", "price": {"input": 1.0, "output": 2.0}},
            "answer": {"provider": "good", "id": "mock-answer", "price": {"input": 1.0, "output": 4.0}},
        },
        "tiers": {"solo": ["answer"], "fallback": ["gone", "answer"]},
        "default_tier": "solo",
    }


class Traced:
    """An app whose spans end up in `exporter`, and an SDK client for it."""

    def __init__(self, apps: Apps, **settings: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.app = build_app(  # the gateway's own upstream client: it serves `mock://` in-process
            rules(free_port()),
            settings=app_settings(**settings),
            keys={KEY_ENV: SECRET},
            span_processor=SimpleSpanProcessor(self.exporter),
        )
        self.http = apps.client(self.app)
        self.sdk = openai.AsyncOpenAI(
            base_url="http://router/v1", api_key="router-key-123456789", http_client=self.http, max_retries=0
        )

    async def settled(self) -> list[ReadableSpan]:
        """Every span so far, once the requests' finishing work is done."""
        await self.app.gateway.lifecycle.drainer.drain()
        return list(self.exporter.get_finished_spans())


@pytest.fixture
async def traced(apps: Apps) -> AsyncIterator[Callable[..., Traced]]:
    """`traced(**settings)` → a new traced app; their upstream clients closed after the test."""
    made: list[Traced] = []

    def make(**settings: Any) -> Traced:
        made.append(Traced(apps, **settings))
        return made[-1]

    yield make
    for one in made:
        await one.app.gateway.client.aclose()
