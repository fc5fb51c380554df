"""What clients do to the router, each behaviour recorded the same way (`Seen`).

Every behaviour exists for the sync `openai.OpenAI` and the async `openai.AsyncOpenAI`
client; the messages carry directives for `tests.support.scripted_upstream` (delay before
the answer, drip between stream chunks, a tag the fake remembers).

Behaviours:
- ``plain``        non-streamed, read to the end (the cost header is recorded)
- ``stream_end``   streamed, the body read to its very end (past `data: [DONE]`)
- ``stream_parse`` `with_streaming_response.create(..., stream=True) as r: list(r.parse())`
                   — the SDK closes the connection at `data: [DONE]`
- ``stream_iter``  `for chunk in create(..., stream=True)` — also closes at `[DONE]`
- ``first_chunk``  `for chunk in stream: break`, then close (the provider is still dripping)
- ``timeout``      `timeout=1.0, max_retries=0` against a provider that waits 2 s:
                   the client leaves before the first byte (non-streamed)
- ``timeout_stream`` the same, streamed
- ``raw_close``    a raw socket: sends the request, waits until the provider has it, closes

Records made by hand elsewhere use ``random_cut`` (a stream left at an arbitrary point: nothing
exact to check), ``refused`` (a limit said no: not admitted) or ``upstream_failed``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import openai

from tests.support.router_process import REQUEST_ID, micro
from tests.support.scripted_upstream import ScriptedUpstream

CLIENT_TIMEOUT_S = 1.0
"""The impatient client's timeout; the scripted provider waits SLOW_S before answering. A
whole second for the router to route (and usually forward) the request before the client
leaves, even on a loaded machine."""
SLOW_S = 2.0
DRIP_S = 0.1  # ~17 chunks: the provider is still streaming long after the client left
SDK_TIMEOUT_S = 20.0

SYNC_BEHAVIOURS = (
    "plain",
    "stream_end",
    "stream_parse",
    "stream_iter",
    "first_chunk",
    "timeout",
    "timeout_stream",
)
ASYNC_BEHAVIOURS = SYNC_BEHAVIOURS
EXACT = {"plain", "stream_end", "stream_parse", "stream_iter"}
"""Behaviours whose provider usage reaches the router: the line's cost is exact, not estimated."""
GONE_BEFORE_ANSWER = {"timeout", "timeout_stream", "raw_close"}


@dataclass
class Seen:
    """One request as the client saw it."""

    behaviour: str
    flavour: str  # sync | async | raw
    tag: str
    model: str
    request_id: str | None = None
    status: int | None = None  # None: no response reached the client
    header_cost: int | None = None  # x-router-cost-usd, micro-dollars
    usage_cost: int | None = None  # the final usage chunk's cost_usd, micro-dollars
    error: str | None = None
    expected: int | None = None  # the status the client should get, when not the behaviour's

    @property
    def expect_status(self) -> int:
        if self.expected is not None:
            return self.expected
        return 499 if self.behaviour in GONE_BEFORE_ANSWER else 200

    @property
    def exact(self) -> bool:
        return self.behaviour in EXACT

    def describe(self) -> str:
        return f"{self.flavour}/{self.behaviour} tag={self.tag} id={self.request_id}"


def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def prompt(behaviour: str, tag: str) -> list[Any]:
    script = f"[tag={tag}]"
    if behaviour in ("timeout", "timeout_stream", "raw_close"):
        script += f" [delay={SLOW_S}]"
    if behaviour == "first_chunk":
        script += f" [drip={DRIP_S}]"
    return [{"role": "user", "content": f"Lifecycle check {behaviour} {tag} {script}"}]


def cost_of_usage(usage: Any) -> int | None:
    value = usage.get("cost_usd") if isinstance(usage, dict) else getattr(usage, "cost_usd", None)
    return None if value is None else micro(str(Decimal(repr(float(value)))))


def header_cost(headers: Any) -> int | None:
    value = headers.get("x-router-cost-usd")
    return None if value is None else micro(value)


def usage_from_sse(lines: list[str]) -> Any:
    usage = None
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
    return usage


def identify(response: Any) -> tuple[int, str | None]:
    return response.status_code, response.headers.get(REQUEST_ID)


STREAM_ARGS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}


# ------------------------------------------------------------------------------------- sync


def run_sync(client: openai.OpenAI, behaviour: str, model: str = "auto") -> Seen:
    seen = Seen(behaviour, "sync", new_tag(), model)
    messages = prompt(behaviour, seen.tag)
    chat = client.chat.completions
    try:
        if behaviour == "plain":
            raw = chat.with_raw_response.create(model=model, messages=messages)
            seen.status, seen.request_id = raw.status_code, raw.headers.get(REQUEST_ID)
            seen.header_cost = header_cost(raw.headers)
            raw.parse()
        elif behaviour == "stream_end":
            with chat.with_streaming_response.create(model=model, messages=messages, **STREAM_ARGS) as r:
                seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
                lines = list(r.iter_lines())
            seen.usage_cost = cost_of_usage(usage_from_sse(lines))
        elif behaviour == "stream_parse":
            with chat.with_streaming_response.create(model=model, messages=messages, **STREAM_ARGS) as r:
                seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
                chunks = list(r.parse())
            seen.usage_cost = cost_of_usage(chunks[-1].usage if chunks else None)
        elif behaviour == "stream_iter":
            stream = chat.create(model=model, messages=messages, **STREAM_ARGS)
            seen.status, seen.request_id = identify(stream.response)
            chunks = list(stream)
            seen.usage_cost = cost_of_usage(chunks[-1].usage if chunks else None)
        elif behaviour == "first_chunk":
            stream = chat.create(model=model, messages=messages, **STREAM_ARGS)
            seen.status, seen.request_id = identify(stream.response)
            for _ in stream:
                break
            stream.close()
        elif behaviour in ("timeout", "timeout_stream"):
            impatient = client.with_options(timeout=CLIENT_TIMEOUT_S, max_retries=0).chat.completions
            extra = STREAM_ARGS if behaviour == "timeout_stream" else {}
            try:
                impatient.create(model=model, messages=messages, **extra)
            except openai.APITimeoutError:
                pass
            else:
                seen.error = "the impatient client got an answer (the provider did not wait?)"
        else:
            raise ValueError(behaviour)
    except openai.APIError as exc:
        seen.error = f"{type(exc).__name__}: {exc}"
    return seen


# ------------------------------------------------------------------------------------ async


async def run_async(client: openai.AsyncOpenAI, behaviour: str, model: str = "auto") -> Seen:
    seen = Seen(behaviour, "async", new_tag(), model)
    messages = prompt(behaviour, seen.tag)
    chat = client.chat.completions
    try:
        if behaviour == "plain":
            raw = await chat.with_raw_response.create(model=model, messages=messages)
            seen.status, seen.request_id = raw.status_code, raw.headers.get(REQUEST_ID)
            seen.header_cost = header_cost(raw.headers)
            raw.parse()  # the legacy raw response parses synchronously
        elif behaviour == "stream_end":
            async with chat.with_streaming_response.create(
                model=model, messages=messages, **STREAM_ARGS
            ) as r:
                seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
                lines = [line async for line in r.iter_lines()]
            seen.usage_cost = cost_of_usage(usage_from_sse(lines))
        elif behaviour == "stream_parse":
            async with chat.with_streaming_response.create(
                model=model, messages=messages, **STREAM_ARGS
            ) as r:
                seen.status, seen.request_id = r.status_code, r.headers.get(REQUEST_ID)
                chunks = [c async for c in await r.parse()]
            seen.usage_cost = cost_of_usage(chunks[-1].usage if chunks else None)
        elif behaviour == "stream_iter":
            stream = await chat.create(model=model, messages=messages, **STREAM_ARGS)
            seen.status, seen.request_id = identify(stream.response)
            chunks = [c async for c in stream]
            seen.usage_cost = cost_of_usage(chunks[-1].usage if chunks else None)
        elif behaviour == "first_chunk":
            stream = await chat.create(model=model, messages=messages, **STREAM_ARGS)
            seen.status, seen.request_id = identify(stream.response)
            async for _ in stream:
                break
            await stream.close()
        elif behaviour in ("timeout", "timeout_stream"):
            impatient = client.with_options(timeout=CLIENT_TIMEOUT_S, max_retries=0).chat.completions
            extra = STREAM_ARGS if behaviour == "timeout_stream" else {}
            try:
                await impatient.create(model=model, messages=messages, **extra)
            except openai.APITimeoutError:
                pass
            else:
                seen.error = "the impatient client got an answer (the provider did not wait?)"
        else:
            raise ValueError(behaviour)
    except openai.APIError as exc:
        seen.error = f"{type(exc).__name__}: {exc}"
    return seen


# -------------------------------------------------------------------------------------- raw


def http_request(url: str, key: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    host = urlsplit(url).netloc
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.005)


def raw_close(
    url: str, key: str, upstream: ScriptedUpstream, model: str = "auto", stream: bool = False
) -> Seen:
    """Send a request on a raw socket, wait until the provider has received it (so the
    router surely admitted it), then close the socket without reading anything."""
    seen = Seen("raw_close", "raw", new_tag(), model)
    body: dict[str, Any] = {"model": model, "messages": prompt("raw_close", seen.tag)}
    if stream:
        body.update(STREAM_ARGS)
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(http_request(url, key, body))
        wait_until(lambda: seen.tag in upstream.tags, 10.0, f"the provider to receive {seen.tag}")
    return seen


def sync_client(url: str, key: str, timeout: float = SDK_TIMEOUT_S) -> openai.OpenAI:
    """The OpenAI SDK on the router at `url`, with router key `key` and no retries."""
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=timeout)


def async_client(url: str, key: str, timeout: float = SDK_TIMEOUT_S) -> openai.AsyncOpenAI:
    """The same, async: create it inside the test's event loop (its connections belong there)."""
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=timeout)


async def gather_async(url: str, key: str, plan: list[tuple[str, str]]) -> list[Seen]:
    """Run (behaviour, model) pairs concurrently on one AsyncOpenAI client."""
    async with async_client(url, key) as client:
        return list(await asyncio.gather(*(run_async(client, b, m) for b, m in plan)))
