"""Forwarding: try the decision's candidates in order until one answers.

One candidate loop (`Forwarder.serve`) serves plain and streamed answers alike: for each
candidate the breaker plan offers, it builds the provider's request, sends it, names the
attempt's outcome, and lets the fallback policy (`fallback.verdict`) say what follows — serve,
move on to the next candidate, or hand a refusal that is the client's fault back as is.

What differs between a plain and a streamed answer is a small strategy (`reception.Reception`):
how long an attempt may take, and how a 200 answer is taken in —
- `Plain`: the whole body within `timeouts.total`, parsed;
- `Streamed`: an event stream (by its content type), held back until its first content (text
  or tool call) within `timeouts.first_token`. Nothing reaches the client before that, so a
  stream that fails until then is an attempt like any other; after it, `OpenedStream.frames`
  raises and the caller recovers the stream on the next candidate (`recovery`) or ends it with
  an error event and no `[DONE]`, so a truncated answer never looks complete.

Each candidate's request carries the decision's prompt-cache hints (`providers.cache_hints`);
what its adapter added rides on the answered attempt (`Attempt.cache`) to the log line.

Between attempts, `retries` says whether the same model is asked again (a short
`retry-after`, a first 5xx) and, after a `context_length_exceeded` refusal, which candidates
are too small to try. Plugging in later work (response validators) means changing this loop or
the policy in `fallback`, once, for both kinds of answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import httpx

from tier_router.breakers import AlwaysHealthy, Health
from tier_router.fallback import (
    FAILURES,
    AllCandidatesFailed,
    Attempt,
    Breaker,
    Outcome,
    UpstreamClientError,
    outcome_of,
    refusal_outcome,
    retry_after_seconds,
    verdict,
)
from tier_router.provider_keys import KeySource, redact
from tier_router.providers.base import Adapter, ClientRequestError
from tier_router.providers.cache_hints import CacheWork, hints_for
from tier_router.providers.registry import adapter_for, embeddings_adapter_for
from tier_router.reception import PLAIN, HeldBack, Plain, PlainAnswer, Reception, Streamed, Vectors
from tier_router.redaction import Redactor
from tier_router.retries import ContextFloor, retry_delay, skipped_too_small
from tier_router.routing.engine import Decision, ModelRoute
from tier_router.settings import DEFAULT_MAX_SSE_LINE_BYTES
from tier_router.stream import OpenedStream
from tier_router.transport import transport_for

__all__ = [
    "PLAIN",
    "Completion",
    "Forwarder",
    "HeldBack",
    "Plain",
    "PlainAnswer",
    "Reception",
    "Served",
    "Streamed",
    "Vectors",
    "upstream_headers",
]

PASSTHROUGH_HEADERS = frozenset({"x-request-id", "request-id", "openai-processing-ms"})
BASE_HEADERS = {"user-agent": "tier-router", "accept": "application/json"}
ERROR_BODY_LIMIT = 64 * 1024

A = TypeVar("A")


@dataclass(slots=True)
class Completion:
    route: ModelRoute
    data: dict[str, Any]
    raw: bytes | None
    """The upstream body when it already is the OpenAI answer (sent as is, no re-encoding)."""
    attempts: list[Attempt]
    headers: dict[str, str]


# -- the candidate loop --------------------------------------------------------------------------


class Served(NamedTuple, Generic[A]):
    route: ModelRoute
    attempts: list[Attempt]
    secret: str | None
    response: httpx.Response
    answer: A


Prepared = tuple[Adapter, httpx.Request, str | None, CacheWork | None]
"""A candidate's request, its adapter, the provider key in it, and what its adapter added for
the provider's prompt cache."""
Tried = list[Attempt] | None
"""The request's own attempts list to fill (a cut-off attempt stays on it) or None for a new one."""


class Forwarder:
    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: KeySource,
        health: Health | None = None,
        clock: Callable[[], float] = time.perf_counter,
        *,
        max_sse_line: int = DEFAULT_MAX_SSE_LINE_BYTES,
        redactor: Redactor | None = None,
        max_attempts: int = 4,
        rng: random.Random | None = None,
        deadline_s: float = 600.0,
    ) -> None:
        self.client = client
        self.max_sse_line = max_sse_line
        self.max_attempts = max_attempts
        """Attempts per request after which no model is retried (`routing.max_attempts`)."""
        self.rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self.deadline_s = deadline_s
        """One deadline for reaching an answer across every attempt (`routing.deadline_s`)."""
        self.keys = keys
        self.redactor = redactor or Redactor()
        self._plain = Plain(self.redactor)
        self.health = health or AlwaysHealthy()
        self.clock = clock
        self._urls: dict[str, httpx.URL] = {}
        self._timeouts: dict[str, dict[str, float]] = {}
        self._transports: dict[httpx.URL, httpx.AsyncBaseTransport] = {}

    async def complete(
        self, decision: Decision, body: dict[str, Any], *, ends: float | None = None, attempts: Tried = None
    ) -> Completion:
        served = await self.serve(decision, body, self._plain, ends=ends, attempts=attempts)
        data, raw = served.answer
        headers = upstream_headers(served.response, self.redactor)
        return Completion(served.route, data, raw, served.attempts, headers)

    async def embed(
        self, decision: Decision, body: dict[str, Any], inputs: int, attempts: list[Attempt]
    ) -> Completion:
        """An embeddings answer of `inputs` vectors: the same candidate loop (filling `attempts`),
        with each provider's embeddings adapter (`providers.registry.EMBEDDINGS`)."""
        vectors = Vectors(inputs, self.redactor)
        served = await self.serve(decision, body, vectors, adapters=embeddings_adapter_for, attempts=attempts)
        data, raw = served.answer
        headers = upstream_headers(served.response, self.redactor)
        return Completion(served.route, data, raw, served.attempts, headers)

    async def open_stream(
        self, decision: Decision, body: dict[str, Any], include_usage: bool, *, ends: float | None = None,
        attempts: Tried = None,
    ) -> OpenedStream:  # fmt: skip
        streamed = Streamed(include_usage, self.max_sse_line)
        served = await self.serve(decision, body, streamed, ends=ends, attempts=attempts)
        decoder, batches, held, pending = served.answer
        return OpenedStream(
            served.route,
            served.attempts,
            held,
            pending,
            decoder,
            upstream_headers(served.response, self.redactor),
            served.route.timeouts.stall,
            batches,
            served.response,
            redactor=self.redactor,
        )

    def deadline(self) -> float:
        """The request's deadline (`routing.deadline_s` from now) on the forwarder's clock: a
        cascade passes it to each of its tiers, so escalating never extends it."""
        return self.clock() + self.deadline_s

    async def serve(
        self, decision: Decision, body: dict[str, Any], reception: Reception[A], *,
        ends: float | None = None, adapters: Callable[[str], Adapter] = adapter_for, attempts: Tried = None,
    ) -> Served[A]:  # fmt: skip
        """The candidate loop: every candidate the plan offers, until one serves — each tried
        once, or again after a refusal that may pass in a moment (`retries`). Raises
        UpstreamClientError (a refusal that is the client's fault, or a prompt too long for
        every candidate left) or AllCandidatesFailed. `attempts` (the caller's, if given) is filled
        as they happen; one cut off by a cancellation (the client left) is `abandoned`."""
        attempts = [] if attempts is None else attempts
        plan = await self.health.plan(decision.candidates)
        floor: ContextFloor | None = None  # set by the first context_length_exceeded
        too_long: tuple[Attempt, ModelRoute] | None = None  # the last such refusal, if nothing tried since
        ends = self.deadline() if ends is None else ends
        while (step := await plan.next()) is not None:
            route, admitted = step
            if self.clock() >= ends:  # out of time: no candidate is started past the deadline
                await plan.release(route)
                break
            if admitted and floor is not None and not floor.fits(route):
                attempts.append(skipped_too_small(route, floor))
                await plan.release(route)
                continue
            prepared = await self._prepare(route, admitted, body, adapters, decision)
            retry = False
            while True:
                if isinstance(prepared, Attempt):  # not tried
                    attempt, got = prepared, None
                else:
                    sent = self.clock()
                    try:
                        attempt, got = await self._attempt(route, prepared, reception, ends)
                    except asyncio.CancelledError:  # the request ended mid-attempt: billable
                        cut = Attempt(route.name, route.provider_name, Outcome.ABANDONED, retry=retry)
                        cut.elapsed_ms, cut.started = self._ms(sent), sent
                        attempts.append(cut)
                        raise
                    attempt.retry = retry
                attempts.append(attempt)
                judged = verdict(attempt.outcome)
                breaker = judged.breaker  # what the breakers record
                if breaker is Breaker.SUCCESS:
                    await plan.success(route)
                elif breaker is Breaker.PROVIDER or breaker is Breaker.MODEL:
                    await plan.failure(route, breaker.value)  # type: ignore[arg-type]
                elif breaker is Breaker.RELEASE:
                    await plan.release(route)
                if judged.client_fault:
                    raise UpstreamClientError(attempt.status or 400, attempt.detail, route, attempts)
                if not judged.moves_on and got is not None:
                    return Served(route, attempts, *got)
                if attempt.tried:
                    too_long = None
                if attempt.outcome is Outcome.CONTEXT_LENGTH:
                    floor = floor or ContextFloor()
                    floor.refuse(route)
                    too_long = attempt, route
                    break
                delay = retry_delay(route, attempts, self.max_attempts, self.rng)
                if delay is None or not plan.retryable(route) or self.clock() + delay >= ends:
                    break
                await asyncio.sleep(delay)
                retry = True
        if too_long is not None:  # no larger candidate left: the provider's refusal, as is
            attempt, route = too_long
            raise UpstreamClientError(attempt.status or 400, attempt.detail, route, attempts)
        raise AllCandidatesFailed(attempts)

    async def _attempt(
        self, route: ModelRoute, prepared: Prepared, reception: Reception[A], ends: float
    ) -> tuple[Attempt, tuple[str | None, httpx.Response, A] | None]:
        """Send one candidate's request: the attempt, and when it was answered, the key used,
        the response (owned by the reception from here on) and the answer."""
        adapter, request, secret, cache = prepared
        started = self.clock()
        response: httpx.Response | None = None
        own = reception.deadline(route)
        left = ends - started
        try:
            async with asyncio.timeout(min(own, left)):
                response = await self._transport(request.url).handle_async_request(request)
                response.request = request
                if response.status_code != 200:
                    await response.aread()
                    return self._refusal(route, adapter, response, secret, started), None
                answer = await reception.receive(adapter, response)
        except BaseException as exc:
            if response is not None:
                await response.aclose()
            if not isinstance(exc, FAILURES):
                raise
            detail = self._scrub(str(exc) or exc.__class__.__name__, secret)[:300]
            outcome, elapsed = outcome_of(exc), self._ms(started)
            if outcome is Outcome.TIMEOUT and left < own and isinstance(exc, TimeoutError):
                outcome = Outcome.DEADLINE  # the request's deadline, not the model's timeout
            failed = Attempt(route.name, route.provider_name, outcome, detail, elapsed_ms=elapsed)
            failed.started = started
            return failed, None
        ok = Attempt(route.name, route.provider_name, Outcome.OK, elapsed_ms=self._ms(started))
        ok.started, ok.cache = started, cache
        return ok, (secret, response, answer)

    def _refusal(
        self,
        route: ModelRoute,
        adapter: Adapter,
        response: httpx.Response,
        secret: str | None,
        started: float,
    ) -> Attempt:
        """A non-200 answer, as an attempt (whether it is the client's fault is `verdict`'s call)."""
        status = response.status_code
        content = response.content[:ERROR_BODY_LIMIT]
        message = self._scrub(adapter.error_message(status, content), secret)
        return Attempt(
            route.name,
            route.provider_name,
            refusal_outcome(status, content),
            message,
            status=status,
            retry_after=retry_after_seconds(response.headers),
            elapsed_ms=self._ms(started),
            started=started,
        )

    async def _prepare(
        self, route: ModelRoute, admitted: bool, body: dict[str, Any], adapters: Callable[[str], Adapter],
        decision: Decision,
    ) -> Prepared | Attempt:  # fmt: skip
        """The request for one candidate, or the attempt that says why it cannot be tried."""
        if not admitted:
            return Attempt(route.name, route.provider_name, Outcome.BREAKER_OPEN, "circuit breaker is open")
        secret: str | None = None
        env = route.provider.api_key_env
        if env is not None:
            secret = await self.keys.get(env)
            if secret is None:
                return Attempt(route.name, route.provider_name, Outcome.MISSING_KEY, f"{env} is not set")
        adapter = adapters(route.provider.kind)
        try:
            upstream = adapter.build(route, body, secret, hints_for(decision, route))
        except ClientRequestError as exc:  # this provider cannot express it; another may
            return Attempt(route.name, route.provider_name, Outcome.UNSUPPORTED, str(exc), status=400)
        request = httpx.Request(
            "POST",
            self._url(upstream.url),
            headers={**BASE_HEADERS, **upstream.headers},
            content=upstream.content,
            extensions={"timeout": self._timeout(route)},
        )
        return adapter, request, secret, upstream.cache

    def _scrub(self, text: str, secret: str | None) -> str:
        """Provider text for an error or a log: every known secret, the key just used (even
        one too short for the redactor) and anything shaped like a provider key, removed."""
        return redact(self.redactor.text(text), [secret or ""])

    def _transport(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        """The client's own transport for `url`, used directly (see `transport`)."""
        transport = self._transports.get(url)
        if transport is None:
            transport = self._transports[url] = transport_for(self.client, url)
        return transport

    def _url(self, url: str) -> httpx.URL:
        """Parsed once per distinct URL: parsing a URL costs more than the rest of a request's setup."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _timeout(self, route: ModelRoute) -> dict[str, float]:
        timeout = self._timeouts.get(route.name)
        if timeout is None:
            t = route.timeouts
            timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect).as_dict()
            self._timeouts[route.name] = timeout
        return timeout

    def _ms(self, started: float) -> float:
        return round((self.clock() - started) * 1000, 2)


def upstream_headers(response: httpx.Response, redactor: Redactor | None = None) -> dict[str, str]:
    """The provider's request id and rate-limit headers, in one pass over the raw headers,
    scrubbed of every secret `redactor` knows (names too)."""
    headers: dict[str, str] = {}
    scrub = redactor.text if redactor else str
    for raw_name, raw_value in response.headers.raw:
        name = raw_name.decode("latin-1").lower()
        if name in PASSTHROUGH_HEADERS or name.startswith(("x-ratelimit-", "anthropic-ratelimit-")):
            headers[scrub(name)] = scrub(raw_value.decode("latin-1"))
    if "request-id" in headers:  # Anthropic's name for it
        headers.setdefault("x-request-id", headers.pop("request-id"))
    return headers
