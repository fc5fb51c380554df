"""Where the spans go: a tracer provider of the router's own, a batch processor, OTLP/HTTP.

The provider is the router's, not the process-wide global one: an application that embeds
the app keeps its own. The batch processor hands spans to the exporter on its own thread, so
ending a span never waits for the network. The standard `OTEL_EXPORTER_OTLP_*` variables
(headers, timeout, compression, certificates) and `OTEL_TRACES_SAMPLER` are read by the SDK
itself; the endpoint and the service name come from `Settings`.

On Lambda the container is frozen once the invocation returns, so spans still queued would
wait for the next invocation (or be lost): the handler calls `Flusher.flush` before returning.
The SDK's `force_flush` exports in the caller's thread for as long as the exporter's timeout
and retries take (seconds, against a dead collector); `flush` waits at most FLUSH_S for it and
leaves it running on its own thread, so a collector that does not answer costs an invocation
FLUSH_S at most, never the response.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tier_router.settings import Settings

log = logging.getLogger("tier_router")
FLUSH_S = 2.0
"""At most this long `flush` (Lambda, before each invocation returns) waits for the export."""


def tracer_provider(settings: Settings, processor: SpanProcessor | None = None) -> TracerProvider:
    """The router's provider: `processor` (tests), else a batch processor exporting over
    OTLP/HTTP to `settings.otel_endpoint` (None: the SDK's default, localhost:4318)."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    exporting = processor or BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    provider.add_span_processor(exporting)
    return provider


class Flusher:
    """Bounded flushes of one provider, on one thread of their own (never two at once: a
    flush still stuck on a dead collector is waited for again, not joined by another)."""

    def __init__(self, provider: TracerProvider, within_s: float = FLUSH_S) -> None:
        self.provider = provider
        self.within_s = within_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tier-router-otel-flush")
        self._running: Future[bool] | None = None

    def flush(self) -> bool:
        """Export what is queued; True once it was, False when it did not finish in time
        (the export goes on in the background) or failed."""
        if self._running is None or self._running.done():
            self._running = self._pool.submit(self.provider.force_flush)
        try:
            return bool(self._running.result(timeout=self.within_s))
        except FutureTimeout:
            log.warning("exporting spans took over %.1f s: returning without waiting for it", self.within_s)
            return False
        except Exception:
            log.exception("exporting spans failed")
            return False
