"""Fallback: what one candidate's attempt came to, and what follows from it.

The policy (what moves on to the next candidate):
- connect errors, timeouts, dropped connections, and answers that are not valid
  (bad JSON, garbage SSE, a stream that ends before its end marker) — provider failures;
- HTTP 408, 409, 425, 429 and 5xx — provider overload or outage. Before moving on, the same
  model may be retried once (`retries`: a 429 whose `retry-after` is short, a first
  500/502/503); a longer `retry-after` moves on at once;
- HTTP 401, 403 and 404 — the operator's misconfiguration (a bad key, a wrong model id):
  another provider can still serve, and the breaker keeps the broken one out of the way.
- A refusal that says the prompt does not fit the model's context window
  (`context_length_exceeded`, see `CONTEXT_LENGTH_PATTERN`): the next candidate whose
  `context_window` is larger than the refusing model's (or unknown) is tried; those with a
  smaller or equal known window are skipped (`window_too_small`), and the refusing model is
  never asked again. It is the request's size, not a failure: the breakers record a success
  (the provider answered). When no larger candidate is left, the refusal goes back to the
  client as is.
- Any other 4xx (400, 413, 422...) is the client's request — a content-policy refusal
  included: returned as is, not retried, and the provider counts as up (it answered).
- The router's own connection pool exhausted (`router_busy`): the request never left, the next
  candidate is tried, and no breaker records anything.
- A candidate that cannot be tried (breaker open, key missing, the provider cannot express the
  request) is skipped.

What a failure counts against (see `breakers.plan`): only failures that say the endpoint
itself is down — connect errors (refused, unreachable, connect timeouts) and connections reset
or dropped — count against the provider's breaker, so all its models are skipped together.
Everything one model can cause on its own counts against the model's breaker: timeouts (a slow
model: `total`, `first_token`, read timeouts), HTTP-level failures (429, 5xx, a rejected key)
and invalid answers. A slow model therefore never takes its provider's fast models down.

The router's own trouble is nobody's failure: a wait for a connection from the router's pool
that times out (`httpx.PoolTimeout`: the pool is exhausted, the request never left) is
`router_busy` — the next candidate is tried, no breaker records anything (an admitted probe's
lease goes back), and a chain where every tried attempt was `router_busy` answers 503.

Streams are held back until the first real content (text or tool call): whatever goes wrong
before that — an error status, a stall past `first_token`, garbage — is an attempt like any
other, invisible to the client, who gets the next candidate's stream instead. After content
has been sent, a text stream that fails is finished by the next candidate once (`recovery`);
otherwise the failure ends the stream with an error event (`responses.event_stream`).

The policy is data — `VERDICTS`, `RETRY_STATUSES`, `OPERATOR_STATUSES`, `FAILURES`,
`FAILURE_OUTCOMES` — read by two functions: `outcome_of(exc)` names a failure, and
`verdict(outcome)` says what the candidate loop does next and what the breakers record.
This is the seam for response validators: a validator turns an answer into an outcome
(say, `INVALID_RESPONSE`), and the verdict does the rest.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx

from tier_router.errors import APIError, UpstreamError
from tier_router.providers.base import UpstreamProtocolError

if TYPE_CHECKING:
    from tier_router.providers.cache_hints import CacheWork
    from tier_router.routing.engine import ModelRoute


class Outcome(StrEnum):
    """What one attempt came to. A `str`: `attempt.outcome == "timeout"` holds, and logs show
    the plain value. A refusal is `http_<status>` (`Outcome.http(503)`), one member per
    status, made on first use."""

    OK = "ok"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    CONNECTION_ERROR = "connection_error"
    INVALID_RESPONSE = "invalid_response"
    MISSING_KEY = "missing_key"
    BREAKER_OPEN = "breaker_open"
    UNSUPPORTED = "unsupported"
    """The provider cannot express the request (e.g. a content part it lacks)."""
    ROUTER_BUSY = "router_busy"
    """The router's own connection pool was exhausted: the request never reached the provider."""
    CONTEXT_LENGTH = "context_length_exceeded"
    """The provider refused the prompt as longer than the model's context window."""
    WINDOW_TOO_SMALL = "window_too_small"
    """Skipped: a model refused the prompt as too long, and this one's window is no larger."""
    DEADLINE = "request_deadline"
    """Cut by the request's own deadline (`routing.deadline_s`), before the model's timeout."""
    ABANDONED = "abandoned"
    """In flight when the request was given up (its client left, or shutdown): the provider
    may bill it, so the request is charged its reservation (`lifecycle`)."""

    @classmethod
    def http(cls, status: int) -> Outcome:
        return cls(f"http_{status}")

    @classmethod
    def _missing_(cls, value: object) -> Outcome | None:
        if isinstance(value, str) and len(value) == 8 and value[:5] == "http_" and value[5:].isdigit():
            member = str.__new__(cls, value)
            member._name_ = value.upper()
            member._value_ = value
            return cls._value2member_map_.setdefault(value, member)  # type: ignore[return-value]
        return None

    @property
    def status(self) -> int | None:
        """The HTTP status of a refusal, else None."""
        return int(self[5:]) if self[:5] == "http_" else None


NOT_TRIED = frozenset(
    {
        Outcome.MISSING_KEY,
        Outcome.BREAKER_OPEN,
        Outcome.UNSUPPORTED,
        Outcome.ROUTER_BUSY,
        Outcome.WINDOW_TOO_SMALL,
    }
)
"""Skipped candidates: no request reached the provider (`router_busy`: the router's own pool
had no connection for it in time)."""

UNJUDGED = frozenset({Outcome.DEADLINE, Outcome.ABANDONED})
"""Tried, yet no verdict on the model: the request's own deadline, or its end, cut the attempt
short."""


class Breaker(StrEnum):
    """What an attempt records on its candidate's breakers (`health.Plan`)."""

    SUCCESS = "success"
    """The provider answered: both breakers record a success."""
    PROVIDER = "provider"
    """The provider's endpoint is down (connect error, connection reset): counts against all of
    its models."""
    MODEL = "model"
    """A failure this model can cause alone (timeout, 429, 5xx, invalid answer): this model only."""
    RELEASE = "release"
    """Admitted, then not tried (or never sent: `router_busy`): the probe leases go back unused."""
    NONE = "none"
    """Never admitted: nothing to record."""


class Verdict(NamedTuple):
    moves_on: bool
    """The next candidate is tried."""
    client_fault: bool
    """The client's request is wrong: the refusal goes back to the client as is."""
    breaker: Breaker


SERVED = Verdict(moves_on=False, client_fault=False, breaker=Breaker.SUCCESS)
CLIENT_FAULT = Verdict(moves_on=False, client_fault=True, breaker=Breaker.SUCCESS)
REFUSED = Verdict(moves_on=True, client_fault=False, breaker=Breaker.MODEL)
"""A refusal that is not the client's fault: overload, outage, the operator's misconfiguration."""

VERDICTS: dict[Outcome, Verdict] = {
    Outcome.OK: SERVED,
    Outcome.TIMEOUT: Verdict(moves_on=True, client_fault=False, breaker=Breaker.MODEL),
    Outcome.CONNECT_ERROR: Verdict(moves_on=True, client_fault=False, breaker=Breaker.PROVIDER),
    Outcome.CONNECTION_ERROR: Verdict(moves_on=True, client_fault=False, breaker=Breaker.PROVIDER),
    Outcome.INVALID_RESPONSE: Verdict(moves_on=True, client_fault=False, breaker=Breaker.MODEL),
    Outcome.MISSING_KEY: Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE),
    Outcome.UNSUPPORTED: Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE),
    Outcome.ROUTER_BUSY: Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE),
    Outcome.BREAKER_OPEN: Verdict(moves_on=True, client_fault=False, breaker=Breaker.NONE),
    # The request's size, not the provider's failure: it answered (a probe through it succeeded).
    Outcome.CONTEXT_LENGTH: Verdict(moves_on=True, client_fault=False, breaker=Breaker.SUCCESS),
    Outcome.WINDOW_TOO_SMALL: Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE),
    # The request ran out of time, not the model: nothing recorded against it.
    Outcome.DEADLINE: Verdict(moves_on=True, client_fault=False, breaker=Breaker.RELEASE),
    Outcome.ABANDONED: Verdict(moves_on=False, client_fault=False, breaker=Breaker.RELEASE),
}
"""Every outcome but the HTTP refusals, which `verdict` judges by status."""

RETRY_STATUSES = frozenset({408, 409, 425, 429})
"""4xx that mean overload or a transient conflict: move on."""
OPERATOR_STATUSES = frozenset({401, 403, 404})
"""4xx that mean the operator's misconfiguration (a bad key, a wrong model id): move on."""

FAILURES: tuple[type[BaseException], ...] = (httpx.HTTPError, TimeoutError, UpstreamProtocolError)
"""What an attempt may fail with; anything else (a bug, a cancellation) propagates."""
FAILURE_OUTCOMES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Outcome], ...] = (
    (httpx.PoolTimeout, Outcome.ROUTER_BUSY),  # before TIMEOUT: a PoolTimeout is a TimeoutException
    ((httpx.ConnectError, httpx.ConnectTimeout), Outcome.CONNECT_ERROR),
    ((TimeoutError, httpx.TimeoutException), Outcome.TIMEOUT),
    (UpstreamProtocolError, Outcome.INVALID_RESPONSE),
)
"""The first match names a failure; any other of `FAILURES` is a `connection_error`."""


CONTEXT_STATUSES = frozenset({400, 413, 422})
"""Statuses whose body is searched for a context-window refusal (TGI answers 422)."""
CONTEXT_LENGTH_PATTERN = re.compile(
    r"context_length_exceeded"  # OpenAI's error.code
    # OpenAI, DeepSeek, vLLM (its own JSON has a top-level `message`): "This model's maximum
    # context length is 65536 tokens. However, you requested 66343 tokens ..." (e.g.
    # FoundationAgents/OpenManus#79, vllm-project/vllm#20409)
    r"|maximum context length"
    # Anthropic: 400 invalid_request_error "prompt is too long: 208656 tokens > 200000 maximum"
    # (e.g. anthropics/claude-code#59696)
    r"|prompt is too long"
    # vLLM V1: "Prompt length of 5016 is longer than the maximum model length of 4096"
    # (hiyouga/LlamaFactory#7723); "The prompt (total length 25938) is too long to fit into the
    # model (context length 4096)" (vllm-project/vllm#12165)
    r"|longer than the maximum model length|too long to fit into the model"
    # Hugging Face TGI (422): "Input validation error: `inputs` tokens + `max_new_tokens` must
    # be <= 2048" (huggingface/text-generation-inference#628)
    r"|`inputs` tokens \+ `max_new_tokens` must be",
    re.IGNORECASE,
)
"""Refusals that say the prompt does not fit the model's window. Matched against the error's
code and message only (not the whole body, which may quote the prompt), so a content-policy
refusal ("content_policy_violation", "content_filter") never matches."""


def refusal_outcome(status: int, content: bytes) -> Outcome:
    """A non-200 answer's outcome: `http_<status>`, or `context_length_exceeded` when a 400,
    413 or 422 says the prompt is longer than the model's window. Only those statuses' bodies
    are read (small, and rare)."""
    if status in CONTEXT_STATUSES and CONTEXT_LENGTH_PATTERN.search(error_text(content)):
        return Outcome.CONTEXT_LENGTH
    return Outcome.http(status)


def error_text(content: bytes) -> str:
    """The code and message of an error body — OpenAI's `{"error": {"code", "message"}}`,
    Anthropic's `{"error": {"type", "message"}}`, vLLM's top-level `message`, TGI's
    `{"error": "..."}` — joined; a body that is not JSON, as text."""
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content[:4096].decode("utf-8", "replace")
    if not isinstance(data, dict):
        return ""
    parts = [data.get("message"), data.get("code")]
    error = data.get("error")
    if isinstance(error, dict):
        parts += [error.get("message"), error.get("code")]
    else:
        parts.append(error)
    return " ".join(part for part in parts if isinstance(part, str))


def verdict(outcome: Outcome) -> Verdict:
    """What the candidate loop does after an attempt with this outcome."""
    found = VERDICTS.get(outcome)
    if found is not None:
        return found
    status = outcome.status
    if status is None:
        raise ValueError(f"no fallback policy for outcome {outcome!r}")
    if 400 <= status < 500 and status not in RETRY_STATUSES and status not in OPERATOR_STATUSES:
        return CLIENT_FAULT
    return REFUSED


def outcome_of(exc: BaseException) -> Outcome:
    """The outcome of an attempt that raised one of `FAILURES`."""
    for types, outcome in FAILURE_OUTCOMES:
        if isinstance(exc, types):
            return outcome
    return Outcome.CONNECTION_ERROR


@dataclass(slots=True)
class Attempt:
    """One candidate tried (or skipped), as reported in errors and logs. Never holds secrets."""

    model: str
    provider: str
    outcome: Outcome
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None
    elapsed_ms: float = 0.0
    retry: bool = False
    """A same-model retry: the previous attempt was this model's too."""
    started: float = field(default=0.0, compare=False)
    """When it was sent, on the forwarder's clock (`time.perf_counter`); 0.0 when not tried.
    Not logged: tracing places the attempt's span with it."""
    cache: CacheWork | None = field(default=None, compare=False)
    """An answered attempt: what its adapter added for the prompt cache (the line's `prompt_cache`)."""

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "provider": self.provider,
            "outcome": str(self.outcome),
            "ms": self.elapsed_ms,
        }
        if not self.tried:
            data["tried"] = False
        if self.detail:
            data["detail"] = self.detail
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.retry:
            data["retry"] = True
        return data

    @property
    def tried(self) -> bool:
        return self.outcome not in NOT_TRIED


class AllCandidatesFailed(UpstreamError):
    """No candidate served: every one failed, was refused, or could not be tried."""

    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("every candidate failed")
        self.attempts = attempts


class UpstreamClientError(UpstreamError):
    """The provider rejected the request as the client's fault; the client gets it back."""

    def __init__(self, status: int, message: str, route: ModelRoute, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.route = route
        self.attempts = attempts


def all_failed_error(exc: AllCandidatesFailed) -> APIError:
    """502 when providers failed, 504 when they all timed out, 429 when all were rate limited,
    503 when nothing could even be tried (open breakers, missing keys; `router_busy` when a
    candidate waited in vain for the router's own exhausted connection pool), 400 when no candidate
    can express the request. Headers: `x-router-attempts`, and `retry-after` for a 429."""
    attempts = exc.attempts
    tried = [a for a in attempts if a.tried]
    summary = "; ".join(
        f"{a.model} ({a.provider}): {a.outcome}{' - ' + a.detail if a.detail else ''}" for a in attempts
    )
    headers: dict[str, str] = {"x-router-attempts": str(len(tried))}
    unsupported = [a for a in attempts if a.outcome == Outcome.UNSUPPORTED]
    busy = any(a.outcome == Outcome.ROUTER_BUSY for a in attempts)
    if not tried and unsupported and not busy:
        message = "; ".join(f"{a.model} ({a.provider}): {a.detail}" for a in unsupported)
        return APIError(
            400, f"No candidate model can serve this request: {message}", code="unsupported_request"
        )
    if not tried:
        status, code = 503, "router_busy" if busy else "no_available_provider"
    elif all(a.status == 429 for a in tried):
        status, code = 429, "upstream_rate_limited"
        waits = [a.retry_after for a in tried if a.retry_after is not None]
        if waits:
            headers["retry-after"] = str(max(1, round(min(waits))))
    elif all(a.outcome in (Outcome.TIMEOUT, Outcome.DEADLINE) for a in tried):
        status, code = 504, "upstream_timeout"
    else:
        status, code = 502, "upstream_error"
    error = APIError(status, f"Every candidate model failed: {summary}", code=code, headers=headers)
    error.type = "rate_limit_error" if status == 429 else "upstream_error"
    return error


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """`retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
