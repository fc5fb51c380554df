"""OpenTelemetry's exporter across a SnapStart snapshot and restore (`tier_router.snapstart`):
the Lambda entry with `TIER_ROUTER_OTEL=1`, exporting over OTLP/HTTP to a keep-alive collector
on 127.0.0.1, its hooks run as Lambda's runtime runs them (`snapshot_restore_py` is a double
here). Before the snapshot the queued spans are exported once; after the restore the exporter
is a new one — a new HTTP connection, batch queue and worker thread — and the old one is shut
down, so no restored environment writes on the snapshot's connection or exports its spans."""

from __future__ import annotations

import importlib
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tests.support.demo import unjudged_demo
from tests.tracing.collector import FakeCollector

EVENTS = Path(__file__).resolve().parents[1] / "lambda_events"


class Runtime(types.ModuleType):
    """`snapshot_restore_py`'s documented API: registrations kept as (func, args, kwargs)."""

    def __init__(self) -> None:
        super().__init__("snapshot_restore_py")
        self.before: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
        self.after: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def register_before_snapshot(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        self.before.append((func, args, kwargs))
        return func

    def register_after_restore(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        self.after.append((func, args, kwargs))
        return func

    def snapshot(self) -> None:
        for func, args, kwargs in self.before:
            func(*args, **kwargs)

    def restore(self) -> None:
        for func, args, kwargs in self.after:
            func(*args, **kwargs)


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    found = FakeCollector(keep_alive=True)
    yield found
    found.close()


@pytest.fixture
def entry(monkeypatch: pytest.MonkeyPatch, collector: FakeCollector) -> Iterator[tuple[Any, Runtime]]:
    """The Lambda entry, imported fresh with tracing on and the runtime double registered."""
    runtime = Runtime()
    monkeypatch.setenv("TIER_ROUTER_RULES", str(unjudged_demo()))
    monkeypatch.setenv("TIER_ROUTER_STORE", "memory://")
    monkeypatch.setenv("TIER_ROUTER_OTEL", "1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    for name in ("tier_router.lambda_entry", "tier_router.asgi", "tier_router.snapstart"):
        monkeypatch.delitem(sys.modules, name, raising=False)  # put back after the test
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)
    module = importlib.import_module("tier_router.lambda_entry")
    yield module, runtime
    module.app.gateway.tracing.provider.shutdown()


def invoke(entry: Any) -> None:
    event = (EVENTS / "function_url_chat_base64.json").read_text()
    result = entry.lambda_handler(json.loads(event), types.SimpleNamespace())
    assert result["statusCode"] == 200, result  # the handler flushed its spans before returning


def span_names(collector: FakeCollector) -> list[str]:
    return [span.name for _, span in collector.spans()]


def test_after_a_restore_spans_go_out_on_a_new_connection_from_a_new_exporter(
    entry: tuple[Any, Runtime], collector: FakeCollector
) -> None:
    module, runtime = entry
    tracing = module.app.gateway.tracing
    invoke(module)
    invoke(module)
    assert len(collector.client_ports) == 2
    assert collector.client_ports[0] == collector.client_ports[1]  # pooled: the snapshot keeps it
    old: TracerProvider = tracing.provider

    runtime.snapshot()
    runtime.restore()

    assert tracing.provider is not old  # the gateway's Tracing, renewed in place
    assert tracing.retiring is not None
    tracing.retiring.join(10)
    assert not tracing.retiring.is_alive()  # the old provider (its batch thread) is shut down
    invoke(module)
    assert len(collector.client_ports) == 3
    assert collector.client_ports[2] != collector.client_ports[0]  # a connection of its own
    names = span_names(collector)  # a server and a client span per request, none exported twice
    assert (len(names), names.count("chat auto")) == (6, 3)


def test_spans_queued_at_the_snapshot_are_exported_before_it_once(
    entry: tuple[Any, Runtime], collector: FakeCollector
) -> None:
    module, runtime = entry
    tracing = module.app.gateway.tracing
    tracing.tracer.start_span("made during init").end()  # queued, not yet exported
    assert collector.posts == []

    runtime.snapshot()
    assert span_names(collector) == ["made during init"]  # exported once, by the snapshotted process
    runtime.restore()
    tracing.flush()
    invoke(module)
    assert span_names(collector).count("made during init") == 1  # no restored copy exports it again
