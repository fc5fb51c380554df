"""Forwarding: try the decision's candidates in order until one answers.

Fallback rules (what moves on to the next candidate):
- connect errors, timeouts, dropped connections, and answers that are not valid
  (bad JSON, garbage SSE, a stream that ends before its end marker) — provider failures;
- HTTP 408, 409, 425, 429 and 5xx — provider overload or outage; `retry-after` is never
  waited on while another candidate remains;
- HTTP 401, 403 and 404 — the operator's misconfiguration (a bad key, a wrong model id):
  another provider can still serve, and the breaker keeps the broken one out of the way.
- Any other 4xx (400, 413, 422...) is the client's request: returned as is, not retried.

Streams are held back until the first real content (text or tool call): whatever goes
wrong before that — an error status, a stall past `first_token`, garbage — is invisible to
the client, who gets the next candidate's stream instead. After content has been sent, a
failure ends the stream with an OpenAI-style error event and no `[DONE]`, so a truncated
answer never looks complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tier_router.health import AlwaysHealthy, Health, Level, Plan
from tier_router.provider_keys import KeySource, redact
from tier_router.providers.base import (
    Adapter,
    ClientRequestError,
    StreamDecoder,
    UpstreamProtocolError,
    dumps,
    is_content_chunk,
)
from tier_router.providers.registry import adapter_for
from tier_router.routing.engine import Decision, ModelRoute

RETRY_STATUSES = frozenset({408, 409, 425, 429})
OPERATOR_STATUSES = frozenset({401, 403, 404})
PASSTHROUGH_HEADERS = frozenset({"x-request-id", "request-id", "openai-processing-ms"})
BASE_HEADERS = {"user-agent": "tier-router", "accept": "application/json"}
ERROR_BODY_LIMIT = 64 * 1024
T = TypeVar("T")
DRAIN_S = 1.0
"""At most this long to read the rest of a finished stream so its connection can be reused."""


@dataclass(slots=True)
class Attempt:
    """One candidate tried (or skipped), as reported in errors and logs. Never holds secrets."""

    model: str
    provider: str
    outcome: str
    """ok | http_<status> | timeout | connect_error | connection_error | invalid_response |
    missing_key | breaker_open | unsupported (the provider cannot express the request)"""
    detail: str = ""
    status: int | None = None
    retry_after: float | None = None
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model,
            "provider": self.provider,
            "outcome": self.outcome,
            "ms": self.elapsed_ms,
        }
        if not self.tried:
            data["tried"] = False
        if self.detail:
            data["detail"] = self.detail
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data

    @property
    def tried(self) -> bool:
        return self.outcome not in ("missing_key", "breaker_open", "unsupported")


class AllCandidatesFailed(Exception):
    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__("every candidate failed")
        self.attempts = attempts


class UpstreamClientError(Exception):
    """The provider rejected the request as the client's fault; the client gets it back."""

    def __init__(self, status: int, message: str, route: ModelRoute, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.route = route
        self.attempts = attempts


@dataclass(slots=True)
class Completion:
    route: ModelRoute
    data: dict[str, Any]
    raw: bytes | None
    """The upstream body when it already is the OpenAI answer (sent as is, no re-encoding)."""
    attempts: list[Attempt]
    headers: dict[str, str]


Held = list[tuple[dict[str, Any], str | None]]
"""Decoded chunks, each with the upstream's own JSON text when the chunk is exactly that text."""
Events = list[tuple[str, str]]


@dataclass(slots=True)
class OpenedStream:
    """A stream that has produced its first content: nothing after this can fail over."""

    route: ModelRoute
    attempts: list[Attempt]
    held: Held
    pending: Events
    """Events that arrived in the same read as the first content, not decoded yet."""
    decoder: StreamDecoder
    headers: dict[str, str]
    stall_s: float
    _batches: AsyncIterator[Events] | None
    _response: httpx.Response | None
    secret: str | None = field(default=None, repr=False)
    """The provider key used, so mid-stream error text can be scrubbed of it."""

    async def frames(self, on_usage: Callable[[dict[str, Any]], None]) -> AsyncIterator[bytes]:
        """The stream as the client gets it: SSE `data:` frames, as bytes — the held chunks
        first, then whatever each upstream read brings, encoded together (one send per read,
        not per chunk), each read within `stall_s`. `on_usage` may amend the final usage-only
        chunk (the cost) before it is encoded.

        OpenAI-compatible chunks are forwarded as the provider's own text, not re-encoded.
        Raises UpstreamProtocolError / TimeoutError / httpx errors on a failure mid-stream,
        after yielding what was decoded before the failure.
        """
        try:
            out = [sse_frame(chunk, raw, on_usage) for chunk, raw in self.held]
            self.held = []
            events, self.pending = self.pending, []
            decoder = self.decoder
            while True:
                try:
                    for event, data in events:
                        if decoder.finished:
                            break
                        out.extend(
                            sse_frame(chunk, raw, on_usage) for chunk, raw in decode(decoder, event, data)
                        )
                except Exception:
                    if out:  # what the client has not seen yet of this read, then the failure
                        yield b"".join(out)
                    raise
                if out:
                    yield b"".join(out)
                    out = []
                if decoder.finished:
                    await self._drain()
                    return
                if self._batches is None:
                    return
                try:
                    events = await within(self.stall_s, anext(self._batches))
                except StopAsyncIteration:
                    raise UpstreamProtocolError("the provider's stream ended before its end marker") from None
        finally:
            await self.aclose()

    async def _drain(self) -> None:
        """Read what follows the end marker (usually just the end of the chunked body), so the
        connection goes back to the pool: a response closed unread takes its connection with
        it, and every streamed request would pay a new TCP (and TLS) handshake."""
        if self._batches is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(min(self.stall_s, DRAIN_S)):
                async for _ in self._batches:
                    pass

    async def aclose(self) -> None:
        if self._batches is not None:  # close the SSE reader here, not via the loop's finalizer hook
            batches, self._batches = self._batches, None
            with contextlib.suppress(RuntimeError):  # already finished by a cancellation
                await batches.aclose()  # type: ignore[attr-defined]
        if self._response is not None:
            response, self._response = self._response, None
            await response.aclose()


class _Deadline:
    """`within`'s timer callback: cancels the task and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """`await awaitable`, or TimeoutError after `seconds` — `asyncio.timeout` without its
    context-manager machinery: a stream pays this once per upstream read."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    deadline = _Deadline(task)
    timer = loop.call_at(loop.time() + seconds, deadline)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if deadline.fired and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


def decode(decoder: StreamDecoder, event: str, data: str) -> Held:
    """One upstream event's chunks, each with the event's own JSON text when the decoder passes
    chunks through unchanged (so it can be forwarded without re-encoding)."""
    chunks = decoder.feed(event, data)
    if decoder.passthrough and len(chunks) == 1:
        return [(chunks[0], data)]
    return [(chunk, None) for chunk in chunks]


def sse_frame(chunk: dict[str, Any], raw: str | None, on_usage: Callable[[dict[str, Any]], None]) -> bytes:
    if chunk.get("usage") and not chunk.get("choices"):  # the final usage chunk: the app amends it
        on_usage(chunk)
        raw = None
    return b"data: " + (raw.encode() if raw is not None else dumps(chunk)) + b"\n\n"


class Forwarder:
    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: KeySource,
        health: Health | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.client = client
        self.keys = keys
        self.health = health or AlwaysHealthy()
        self.clock = clock
        self._urls: dict[str, httpx.URL] = {}
        self._timeouts: dict[str, dict[str, float]] = {}
        self._transports: dict[httpx.URL, httpx.AsyncBaseTransport] = {}

    def _transport(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        """The client's transport for `url`, used directly: a provider call needs none of the
        client's own layers (auth and redirect loops, event hooks, cookie jar), and they cost
        more per request than the rest of the router's preparation. It is exactly the transport
        `client.send` would use (pool, timeouts, the `mock://` mount, test doubles)."""
        transport = self._transports.get(url)
        if transport is None:
            transport_for_url = getattr(self.client, "_transport_for_url", None)
            transport = transport_for_url(url) if transport_for_url else ClientTransport(self.client)
            self._transports[url] = transport
        return transport

    # -- non-streaming -------------------------------------------------------------------

    async def complete(self, decision: Decision, body: dict[str, Any]) -> Completion:
        attempts: list[Attempt] = []
        plan = await self.health.plan(decision.candidates)
        while (step := await plan.next()) is not None:
            route, admitted = step
            prepared = await self._prepare(plan, route, admitted, body, attempts)
            if prepared is None:
                continue
            adapter, request, secret = prepared
            started = self.clock()
            timeouts = route.provider.timeouts
            response: httpx.Response | None = None
            try:
                async with asyncio.timeout(timeouts.total):
                    response = await self._transport(request.url).handle_async_request(request)
                    response.request = request
                    await response.aread()
                    if response.status_code != 200:
                        await self._refused(plan, route, adapter, response, secret, started, attempts)
                        continue
                    data = adapter.parse(response.content)
            except (httpx.HTTPError, TimeoutError, UpstreamProtocolError) as exc:
                await self._failed(plan, route, exc, secret, started, attempts)
                continue
            finally:
                if response is not None:
                    await response.aclose()
            attempts.append(Attempt(route.name, route.provider_name, "ok", elapsed_ms=self._ms(started)))
            await plan.success(route)
            raw = response.content if adapter.passthrough else None
            return Completion(route, data, raw, attempts, upstream_headers(response))
        raise AllCandidatesFailed(attempts)

    # -- streaming -----------------------------------------------------------------------

    async def open_stream(
        self, decision: Decision, body: dict[str, Any], include_usage: bool
    ) -> OpenedStream:
        attempts: list[Attempt] = []
        plan = await self.health.plan(decision.candidates)
        while (step := await plan.next()) is not None:
            route, admitted = step
            prepared = await self._prepare(plan, route, admitted, body, attempts)
            if prepared is None:
                continue
            adapter, request, secret = prepared
            started = self.clock()
            timeouts = route.provider.timeouts
            response: httpx.Response | None = None
            try:
                async with asyncio.timeout(timeouts.first_token):
                    response = await self._transport(request.url).handle_async_request(request)
                    response.request = request
                    if response.status_code != 200:
                        await response.aread()
                        await self._refused(plan, route, adapter, response, secret, started, attempts)
                        continue
                    content_type = response.headers.get("content-type", "")
                    if not content_type.startswith("text/event-stream"):
                        raise UpstreamProtocolError(
                            f"expected an event stream, got {content_type or 'no type'!r}"
                        )
                    decoder = adapter.decoder(include_usage)
                    batches = sse_batches(response)
                    held, pending = await hold_until_content(batches, decoder)
            except (httpx.HTTPError, TimeoutError, UpstreamProtocolError) as exc:
                if response is not None:
                    await response.aclose()
                await self._failed(plan, route, exc, secret, started, attempts)
                continue
            except BaseException:
                if response is not None:
                    await response.aclose()
                raise
            attempts.append(Attempt(route.name, route.provider_name, "ok", elapsed_ms=self._ms(started)))
            await plan.success(route)
            return OpenedStream(
                route,
                attempts,
                held,
                pending,
                decoder,
                upstream_headers(response),
                timeouts.stall,
                batches,
                response,
                secret=secret,
            )
        raise AllCandidatesFailed(attempts)

    # -- shared steps --------------------------------------------------------------------

    async def _prepare(
        self, plan: Plan, route: ModelRoute, admitted: bool, body: dict[str, Any], attempts: list[Attempt]
    ) -> tuple[Adapter, httpx.Request, str | None] | None:
        """The request for one candidate, or None (recorded in `attempts`) if it cannot be tried."""
        if not admitted:
            attempts.append(
                Attempt(route.name, route.provider_name, "breaker_open", "circuit breaker is open")
            )
            return None
        secret: str | None = None
        env = route.provider.api_key_env
        if env is not None:
            secret = await self.keys.get(env)
            if secret is None:
                attempts.append(Attempt(route.name, route.provider_name, "missing_key", f"{env} is not set"))
                await plan.release(route)
                return None
        adapter = adapter_for(route.provider.kind)
        try:
            upstream = adapter.build(route, body, secret)
        except ClientRequestError as exc:  # this provider cannot express it; another may
            attempts.append(Attempt(route.name, route.provider_name, "unsupported", str(exc), status=400))
            await plan.release(route)
            return None
        request = httpx.Request(
            "POST",
            self._url(upstream.url),
            headers={**BASE_HEADERS, **upstream.headers},
            content=upstream.content,
            extensions={"timeout": self._timeout(route)},
        )
        return adapter, request, secret

    def _url(self, url: str) -> httpx.URL:
        """Parsed once per distinct URL: parsing a URL costs more than the rest of a request's setup."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def _timeout(self, route: ModelRoute) -> dict[str, float]:
        timeout = self._timeouts.get(route.provider_name)
        if timeout is None:
            t = route.provider.timeouts
            timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.read, pool=t.connect).as_dict()
            self._timeouts[route.provider_name] = timeout
        return timeout

    async def _refused(
        self,
        plan: Plan,
        route: ModelRoute,
        adapter: Adapter,
        response: httpx.Response,
        secret: str | None,
        started: float,
        attempts: list[Attempt],
    ) -> None:
        """Record a non-200 answer; raise UpstreamClientError if it is the client's fault."""
        status = response.status_code
        message = redact(adapter.error_message(status, response.content[:ERROR_BODY_LIMIT]), [secret or ""])
        attempt = Attempt(
            route.name,
            route.provider_name,
            f"http_{status}",
            message,
            status=status,
            retry_after=retry_after_seconds(response.headers),
            elapsed_ms=self._ms(started),
        )
        attempts.append(attempt)
        if not 400 <= status < 500 or status in RETRY_STATUSES or status in OPERATOR_STATUSES:
            await plan.failure(route, "model")
            return
        await plan.success(route)  # it answered: the client's request was wrong, the provider is up
        raise UpstreamClientError(status, message, route, attempts)

    async def _failed(
        self,
        plan: Plan,
        route: ModelRoute,
        exc: BaseException,
        secret: str | None,
        started: float,
        attempts: list[Attempt],
    ) -> None:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            outcome = "connect_error"
        elif isinstance(exc, TimeoutError | httpx.TimeoutException):
            outcome = "timeout"
        elif isinstance(exc, UpstreamProtocolError):
            outcome = "invalid_response"
        else:
            outcome = "connection_error"
        detail = redact(str(exc) or exc.__class__.__name__, [secret or ""])[:300]
        attempts.append(
            Attempt(route.name, route.provider_name, outcome, detail, elapsed_ms=self._ms(started))
        )
        level: Level = "model" if outcome == "invalid_response" else "provider"
        await plan.failure(route, level)

    def _ms(self, started: float) -> float:
        return round((self.clock() - started) * 1000, 2)


async def hold_until_content(batches: AsyncIterator[Events], decoder: StreamDecoder) -> tuple[Held, Events]:
    """Read until the first content chunk (or a complete, empty answer): the chunks so far, and
    the events that came in the same read after it (decoded later, like the rest)."""
    held: Held = []
    async for events in batches:
        for i, (event, data) in enumerate(events):
            decoded = decode(decoder, event, data)
            held.extend(decoded)
            if decoder.finished or any(is_content_chunk(chunk) for chunk, _ in decoded):
                return held, events[i + 1 :]
    raise UpstreamProtocolError("the provider's stream ended before any content")


async def sse_batches(response: httpx.Response) -> AsyncIterator[Events]:
    """Server-sent events as (event name, data) pairs, in the batches they arrived in: one list
    per network read, so per-read work (a timeout, a send to the client) is not paid per event,
    and nothing waits for more data than has come."""
    parser = SSEParser()
    async for block in response.aiter_bytes():
        batch = parser.feed(block)
        if batch:
            yield batch
    batch = parser.close()
    if batch:
        yield batch


class SSEParser:
    """Bytes in, complete events out. Comments and ids are ignored; lines may end in LF, CRLF
    or CR (a CR at the end of a block waits for the next block: it may be half a CRLF)."""

    __slots__ = ("data", "event", "rest")

    def __init__(self) -> None:
        self.event = ""
        self.data: list[str] = []
        self.rest = b""

    def feed(self, block: bytes) -> Events:
        rest = self.rest
        lines = (rest + block).splitlines(keepends=True) if rest else block.splitlines(keepends=True)
        self.rest = lines.pop() if lines and (lines[-1][-1:] != b"\n") else b""
        event, data = self.event, self.data
        batch: Events = []
        for line_bytes in lines:
            line = line_bytes.rstrip(b"\r\n").decode("utf-8", "replace")
            if not line:
                if data:
                    batch.append((event, "\n".join(data)))
                event, data = "", []
                continue
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        self.event, self.data = event, data
        return batch

    def close(self) -> Events:
        """At the end of the stream: the last line even without its line ending, and an event
        even without its blank line."""
        batch = self.feed(b"\n") if self.rest else []
        if self.data:
            batch.append((self.event, "\n".join(self.data)))
            self.event, self.data = "", []
        return batch


class ClientTransport(httpx.AsyncBaseTransport):
    """`client.send` behind the transport interface: for a client without `_transport_for_url`
    (a future httpx), so the forwarder keeps working, only slower."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.client.send(request, stream=True)


def upstream_headers(response: httpx.Response) -> dict[str, str]:
    """The provider's request id and rate-limit headers, in one pass over the raw headers."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in response.headers.raw:
        name = raw_name.decode("latin-1").lower()
        if name in PASSTHROUGH_HEADERS or name.startswith(("x-ratelimit-", "anthropic-ratelimit-")):
            headers[name] = raw_value.decode("latin-1")
    if "request-id" in headers:  # Anthropic's name for it
        headers.setdefault("x-request-id", headers.pop("request-id"))
    return headers


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
