"""Where the spans go: a tracer provider of the router's own, a batch processor, OTLP/HTTP.

The provider is the router's, not the process-wide global one: an application that embeds
the app keeps its own. The batch processor hands spans to the exporter on its own thread, so
ending a span never waits for the network. The standard `OTEL_EXPORTER_OTLP_*` variables
(headers, timeout, compression, certificates) and `OTEL_TRACES_SAMPLER` are read by the SDK
itself; the endpoint and the service name come from `Settings`.

Serving, the app's lifespan flushes at shutdown (`Gateway.drain`), bounded the same way:
the SDK's own exit hook is off, since it waits out the exporter's timeout and retries.
On Lambda the container is frozen once the invocation returns, so spans still queued would
wait for the next invocation (or be lost): the handler calls `Flusher.flush` before returning.
The SDK's `force_flush` exports in the caller's thread for as long as the exporter's timeout
and retries take (seconds, against a dead collector); `flush` waits at most FLUSH_S for it and
leaves it running on its own thread, so a collector that does not answer costs an invocation
FLUSH_S at most, never the response.
"""

from __future__ import annotations

import logging
import threading

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
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)  # the lifespan flushes (bounded)
    exporting = processor or BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    provider.add_span_processor(exporting)
    return provider


class Flusher:
    """Bounded flushes of one provider, each on a daemon thread of its own, never two at once:
    a flush still stuck on a dead collector is waited for again, not joined by another (and
    a daemon thread never holds up the process's exit)."""

    def __init__(self, provider: TracerProvider, within_s: float = FLUSH_S) -> None:
        self.provider = provider
        self.within_s = within_s
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._ok = False

    def flush(self) -> bool:
        """Export what is queued; True once that was done, False when it did not finish in
        time (it goes on in the background) or failed."""
        if self._thread is None or not self._thread.is_alive():
            self._done.clear()
            self._thread = threading.Thread(target=self._run, name="tier-router-otel-flush", daemon=True)
            self._thread.start()
        if not self._done.wait(self.within_s):
            log.warning("exporting spans took over %.1f s: returning without waiting for it", self.within_s)
            return False
        return self._ok

    def _run(self) -> None:
        self._ok = False
        try:
            self._ok = self.provider.force_flush()
        except Exception:
            log.exception("exporting spans failed")
        finally:
            self._done.set()
