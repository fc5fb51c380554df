"""The spans of one finished request, built from its record with its own timestamps.

    chat auto                    SERVER  the whole request, as the client saw it
    ├── chat gpt-4.1-mini        CLIENT  attempt 1 (failed: error.type http_503)
    └── chat claude-haiku-4-5    CLIENT  attempt 2 (served)

`Tracing.record` runs once per request, from `lifecycle` after the request line is written:
the attempts' start times (`Attempt.started`) and the request's are on `time.perf_counter`,
placed on the wall clock with one reading of each clock. An attempt span lasts until its
answer began (a stream's first content): the server span lasts until the last byte.

Attributes: the GenAI semantic conventions (`gen_ai.*`: operation, provider, requested and
answering model, tokens, max_tokens, finish reasons), `error.type`, `server.address`/`port`,
and the router's own (`tier_router.*`: request id, tier, rule, outcome, cost, attempts, the
fallback reason of each attempt that was not the last). Numbers and names only: never a
prompt, an answer, a provider's error text or a key (a provider's error message can quote
the request, so an attempt carries its typed outcome, not its detail).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tier_router.fallback import Attempt
from tier_router.fallback import Outcome as AttemptOutcome
from tier_router.request_line import Outcome
from tier_router.settings import Settings
from tier_router.tracing.export import Flusher, tracer_provider

if TYPE_CHECKING:
    from tier_router.lifecycle import Exchange
    from tier_router.routing.routes import ModelRoute

log = logging.getLogger("tier_router")
SCOPE = "tier_router"
OPERATIONS = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
}
"""The paths traced, and the GenAI operation each is (other paths — models, status, health
checks — are not traced)."""
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "mock": "tier_router.mock"}
"""`gen_ai.provider.name` by provider kind (an `openai` kind is any OpenAI-compatible API)."""
PROPAGATION_HEADERS = {b"traceparent": "traceparent", b"tracestate": "tracestate"}
ANSWERED = frozenset({Outcome.OK, Outcome.CACHE_HIT})
FAILED = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.STREAM_INTERRUPTED})
"""Outcomes whose server span has status ERROR (a refusal is the client's: status unset)."""


class Tracing:
    """One per process (the gateway's): spans of finished requests, and their export."""

    def __init__(
        self,
        provider: TracerProvider,
        flusher: Flusher | None = None,
        rebuild: Callable[[], TracerProvider] | None = None,
    ) -> None:
        self._use(provider, flusher)
        self._rebuild = rebuild
        self.retiring: threading.Thread | None = None
        """The last `renew`'s shutdown of the provider it replaced (tests join it)."""
        self._propagator = TraceContextTextMapPropagator()
        self._servers: dict[str, tuple[str | None, int | None]] = {}

    def _use(self, provider: TracerProvider, flusher: Flusher | None = None) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer(SCOPE)
        self.flusher = flusher or Flusher(provider)

    @classmethod
    def build(cls, settings: Settings, processor: SpanProcessor | None = None) -> Tracing:
        if processor is not None:  # a test's processor: used once, never rebuilt
            return cls(tracer_provider(settings, processor))
        return cls(tracer_provider(settings), rebuild=lambda: tracer_provider(settings))

    def flush(self) -> bool:
        """Export the spans queued, waiting FLUSH_S at most (Lambda: before returning)."""
        return self.flusher.flush()

    def renew(self) -> bool:
        """After a SnapStart restore (`tier_router.snapstart`): a new provider, so a new exporter
        (its own HTTP session: the snapshot's pooled connection to the collector is dead, or
        shared by every restored environment), batch queue and worker thread. The old one is
        shut down on a daemon thread (`retiring`): its queue is empty (the before-snapshot
        hook flushed it) and nothing waits for it. False when there is nothing to rebuild (a
        span processor given by a test)."""
        if self._rebuild is None:
            return False
        old = self.provider
        self._use(self._rebuild())
        self.retiring = threading.Thread(target=old.shutdown, name="tier-router-otel-retire", daemon=True)
        self.retiring.start()
        return True

    def record(self, exchange: Exchange, scope: Mapping[str, Any]) -> None:
        """The spans of `exchange`, a finished request. Never raises."""
        try:
            operation = OPERATIONS.get(exchange.line.path)
            if operation is not None:
                self._record(operation, exchange, scope)
        except Exception:
            log.exception("tracing request %s failed", exchange.request_id)

    def _record(self, operation: str, exchange: Exchange, scope: Mapping[str, Any]) -> None:
        now_ns, now = time.time_ns(), time.perf_counter()
        start = now_ns - int((now - exchange.started) * 1e9)
        end = start + int(exchange.line.latency_ms * 1e6)
        parent = self._parent(scope)
        decision = exchange.decision
        requested = decision.requested_model if decision is not None else None
        name = f"{operation} {requested}" if requested else operation
        attributes = _present(self._server_attributes(operation, exchange))
        span = self.tracer.start_span(name, parent, SpanKind.SERVER, attributes, start_time=start)
        line = exchange.line
        if line.outcome in FAILED or line.status >= 500:
            span.set_status(Status(StatusCode.ERROR, str(line.outcome or Outcome.CANCELLED)))
        inside = trace.set_span_in_context(span, parent)
        routes = {(r.name, r.provider_name): r for r in decision.candidates} if decision is not None else {}
        attempts = exchange.attempts
        cursor, last = start, len(attempts) - 1
        for index, attempt in enumerate(attempts):
            ok = attempt.outcome is AttemptOutcome.OK
            served = index == last and exchange.route is not None and ok
            begin = start + int((attempt.started - exchange.started) * 1e9) if attempt.started else cursor
            begin = min(max(begin, start), end)
            finish = min(begin + int(attempt.elapsed_ms * 1e6), end)
            cursor = finish
            route = routes.get((attempt.model, attempt.provider))
            attributes = self._attempt_attributes(operation, exchange, attempt, route, served)
            if index < last and not ok:
                attributes["tier_router.fallback_reason"] = str(attempt.outcome)
            model = route.model_id if route is not None else attempt.model
            child = self.tracer.start_span(
                f"{operation} {model}", inside, SpanKind.CLIENT, _present(attributes), start_time=begin
            )
            if not ok:
                child.set_status(Status(StatusCode.ERROR, str(attempt.outcome)))
            child.end(end_time=finish)
        span.end(end_time=end)

    def _parent(self, scope: Mapping[str, Any]) -> Context | None:
        """The caller's span, from the W3C `traceparent` (and `tracestate`) of the request."""
        carrier = {}
        for name, value in scope.get("headers") or ():
            key = PROPAGATION_HEADERS.get(name)
            if key is not None:
                carrier[key] = value.decode("latin-1")
        return self._propagator.extract(carrier) if carrier else None

    def _server_attributes(self, operation: str, exchange: Exchange) -> dict[str, Any]:
        line, decision, route = exchange.line, exchange.decision, exchange.route
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "http.request.method": line.method,
            "url.path": line.path,
            "http.response.status_code": line.status,
            "tier_router.request_id": line.request_id,
            "tier_router.outcome": str(line.outcome or Outcome.CANCELLED),
            "tier_router.tier": line.tier,
            "tier_router.rule": line.rule,
            "tier_router.priority": line.priority,
            "tier_router.key": line.key,
            "tier_router.cache": line.cache,
            "tier_router.downgraded_from": line.downgraded_from,
            "tier_router.escalated_from": line.escalated_from,
            "tier_router.attempts": sum(1 for a in exchange.attempts if a.tried),
            "tier_router.stream": exchange.stream is not None,
        }
        if line.outcome not in ANSWERED:
            attributes["error.type"] = line.error or str(line.outcome or Outcome.CANCELLED)
        if decision is not None:
            attributes["gen_ai.request.model"] = decision.requested_model
            attributes["gen_ai.request.max_tokens"] = getattr(decision.features, "max_tokens", None)
        if route is not None:
            attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(route.provider.kind, route.provider.kind)
            attributes["gen_ai.response.model"] = _response_model(exchange, route)
            attributes["tier_router.model"] = route.name
            attributes["tier_router.provider"] = route.provider_name
            attributes.update(_usage(exchange.usage))
            attributes.update(_completion(exchange.completion))
        if exchange.admission is not None and exchange.cost is not None:
            attributes["tier_router.cost_usd"] = exchange.cost / 1_000_000
            attributes["tier_router.cost_estimated"] = line.cost_estimated
        return attributes

    def _attempt_attributes(
        self, operation: str, exchange: Exchange, attempt: Attempt, route: ModelRoute | None, served: bool
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": route.model_id if route is not None else attempt.model,
            "tier_router.model": attempt.model,
            "tier_router.provider": attempt.provider,
            "tier_router.attempt.outcome": str(attempt.outcome),
            "tier_router.attempt.tried": attempt.tried,
            "tier_router.attempt.retry": attempt.retry,
        }
        if attempt.status is not None or attempt.outcome is AttemptOutcome.OK:
            attributes["http.response.status_code"] = attempt.status or 200
        if exchange.decision is not None:
            attributes["gen_ai.request.max_tokens"] = getattr(exchange.decision.features, "max_tokens", None)
        if attempt.outcome is not AttemptOutcome.OK:
            attributes["error.type"] = str(attempt.outcome)
        if route is not None:
            attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(route.provider.kind, route.provider.kind)
            address, port = self._server(route.provider.base_url)
            attributes["server.address"], attributes["server.port"] = address, port
        if served and route is not None:
            attributes["gen_ai.response.model"] = _response_model(exchange, route)
            attributes.update(_usage(exchange.usage))
            attributes.update(_completion(exchange.completion))
        return attributes

    def _server(self, base_url: str) -> tuple[str | None, int | None]:
        """A provider's host and port (parsed once per base URL)."""
        found = self._servers.get(base_url)
        if found is None:
            parts = urlsplit(base_url)
            port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
            found = self._servers[base_url] = (parts.hostname, port)
        return found


def _response_model(exchange: Exchange, route: ModelRoute) -> str:
    """The model the provider said answered (a non-streamed answer's `model`), else its id."""
    completion = exchange.completion
    model = completion.get("model") if isinstance(completion, dict) else None
    return model if isinstance(model, str) and model else route.model_id


def _usage(usage: object) -> dict[str, Any]:
    if not isinstance(usage, dict):
        return {}
    return {
        "gen_ai.usage.input_tokens": _int(usage.get("prompt_tokens")),
        "gen_ai.usage.output_tokens": _int(usage.get("completion_tokens")),
    }


def _completion(completion: object) -> dict[str, Any]:
    """The response id and finish reasons of a non-streamed answer (never its content)."""
    if not isinstance(completion, dict):
        return {}
    choices = completion.get("choices")
    choices = choices if isinstance(choices, list) else []
    reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
    response_id = completion.get("id")
    return {
        "gen_ai.response.id": response_id if isinstance(response_id, str) else None,
        "gen_ai.response.finish_reasons": [r for r in reasons if isinstance(r, str)] or None,
    }


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _present(attributes: dict[str, Any]) -> dict[str, Any]:
    """Without the unset ones (OpenTelemetry refuses None values)."""
    return {name: value for name, value in attributes.items() if value is not None}
