"""Re-exports for code not yet moved to the new modules; import from those instead:
`tier_router.forwarder` (Forwarder, Completion: the candidate loop), `tier_router.stream`
(OpenedStream), `tier_router.fallback` (Attempt, Outcome, the status policy,
AllCandidatesFailed, UpstreamClientError, all_failed_error), `tier_router.sse` (the SSE
reader, `within`), `tier_router.transport` (ClientTransport).
TEMPORARY during the restructure: deleted once nothing imports it."""

from tier_router.fallback import (
    OPERATOR_STATUSES,
    RETRY_STATUSES,
    AllCandidatesFailed,
    Attempt,
    UpstreamClientError,
    all_failed_error,
    retry_after_seconds,
)
from tier_router.forwarder import (
    BASE_HEADERS,
    ERROR_BODY_LIMIT,
    PASSTHROUGH_HEADERS,
    Completion,
    Forwarder,
    upstream_headers,
)
from tier_router.sse import Events, SSEParser, sse_batches, within
from tier_router.stream import DRAIN_S, Held, OpenedStream, decode, frame, hold_until_content
from tier_router.transport import ClientTransport

__all__ = [
    "BASE_HEADERS",
    "DRAIN_S",
    "ERROR_BODY_LIMIT",
    "OPERATOR_STATUSES",
    "PASSTHROUGH_HEADERS",
    "RETRY_STATUSES",
    "AllCandidatesFailed",
    "Attempt",
    "ClientTransport",
    "Completion",
    "Events",
    "Forwarder",
    "Held",
    "OpenedStream",
    "SSEParser",
    "UpstreamClientError",
    "all_failed_error",
    "decode",
    "frame",
    "hold_until_content",
    "retry_after_seconds",
    "sse_batches",
    "upstream_headers",
    "within",
]
