"""OpenTelemetry traces of the router's requests: optional (the `otel` extra), off by default.

On with `TIER_ROUTER_OTEL=1` (`Settings.otel`). Each chat request then becomes one server
span, and each provider attempt one client span under it, with the GenAI semantic-convention
attributes and the router's own (`tracing.spans`), exported over OTLP/HTTP by a batch
processor (`tracing.export`). The spans are built once, when the request is finished
(`lifecycle`), from the request's record and with its own timestamps: nothing is added to the
request path, and an incoming W3C `traceparent` makes them children of the caller's span.

Off, this package's `__init__` is all that is imported (by the gateway, at start): nothing of
OpenTelemetry, so the cold start is unchanged. On without the extra installed, the router
refuses to start with the install command (`unavailable`, `start`).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from tier_router.errors import ConfigError

if TYPE_CHECKING:
    from tier_router.settings import Settings
    from tier_router.tracing.spans import Tracing

INSTALL = "pip install 'tier-router[otel]'"
REQUIRED = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
"""What `TIER_ROUTER_OTEL=1` needs: the SDK and the OTLP/HTTP exporter."""


def unavailable(settings: Settings) -> str | None:
    """Why tracing, turned on in `settings`, cannot start (the extra is missing), or None.
    Looked up without importing anything (`serve` checks it before it starts)."""
    if not settings.otel:
        return None
    missing = [name for name in REQUIRED if not _installed(name)]
    if not missing:
        return None
    return (
        f"TIER_ROUTER_OTEL is on but OpenTelemetry is not installed ({', '.join(missing)} not found):"
        f" {INSTALL}, or unset TIER_ROUTER_OTEL"
    )


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def start(settings: Settings, processor: Any = None) -> Tracing | None:
    """The process's tracing when `settings` turn it on (or a span processor is given: tests),
    else None. Raises ConfigError when it is on and the extra is not installed."""
    if not settings.otel and processor is None:
        return None
    problem = unavailable(settings)
    if problem is not None:
        raise ConfigError(problem)
    from tier_router.tracing.spans import Tracing

    return Tracing.build(settings, processor)
