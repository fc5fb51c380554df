"""An opened stream: what the forwarder hands over once a provider's stream has produced its
first content, and how it reaches the client — SSE frames, one send per upstream read, each
read within the stall limit, the connection back to the pool at the end, and a count of what
the client was sent (`streamed_chars`) for pricing a stream the client abandoned.

Also the hold-back: `hold_until_content` reads a stream until its first content, so that
anything that goes wrong before it is invisible to the client (see `forwarder.Streamed`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tier_router.fallback import Attempt
from tier_router.providers.base import (
    StreamDecoder,
    UpstreamProtocolError,
    content_chars,
    dumps,
    is_content_chunk,
)
from tier_router.redaction import Redactor, StreamScrubber
from tier_router.routing.engine import ModelRoute
from tier_router.sse import Events, StallWatch
from tier_router.stream_state import StreamState

DRAIN_S = 1.0
"""At most this long to read the rest of a finished stream so its connection can be reused."""
Held = list[tuple[dict[str, Any], str | None]]
"""Decoded chunks, each with the upstream's own JSON text when the chunk is exactly that text."""


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
    redactor: Redactor = field(default_factory=Redactor, repr=False)
    """Every secret the router holds: scrubbed from each chunk, and from mid-stream error text."""
    streamed_chars: int = 0
    """Characters of content, reasoning and tool-call arguments handed to the client so far
    (`providers.base.content_chars`): what a stream the client abandoned is priced by."""
    _closing: asyncio.Task[None] | None = field(default=None, repr=False)
    state: StreamState = field(default_factory=StreamState)
    """What the client was sent (`stream_state`): completeness, and what a recovery needs."""
    earlier_bad_chunks: int = 0
    """Bad chunks skipped by the streams this one took over from (a recovery)."""
    rewrite: Callable[[Held], Held] | None = None
    """A stream that took over from a failed one (`recovery.Continuation`): its chunks as the
    rest of the answer the client already has."""
    carried_usage: dict[str, Any] | None = None
    """What the streams this one took over from used (added to this one's usage)..."""
    carried_cost: int = 0
    """...and cost, in micro-dollars..."""
    carried_estimated: bool = False
    """...and whether that was estimated (a failed stream rarely sends its usage)."""

    @property
    def bad_chunks(self) -> int:
        """Chunks skipped because they were not JSON, in this stream and the ones before it."""
        return self.earlier_bad_chunks + getattr(self.decoder, "bad_chunks", 0)

    async def frames(
        self, on_usage: Callable[[dict[str, Any]], None], on_complete: Callable[[], bytes] | None = None
    ) -> AsyncIterator[bytes]:
        """The stream as the client gets it: SSE `data:` frames, as bytes — the held chunks
        first, then whatever each upstream read brings, encoded together (one send per read,
        not per chunk), each read within `stall_s` (one `StallWatch` for the stream). `on_usage`
        may amend the final usage-only chunk (the cost) before it is encoded.

        When the answer is complete (the end marker, or every choice finished before a stream
        that then broke off), `on_complete` is called before the last frame goes, and what it
        returns (the client's `[DONE]`) ends that frame: one send, not two. The last frame waits
        for the rest of the upstream body to be read (`_drain`, usually nothing: the end of the
        chunked body came with the end marker), so the connection goes back to the pool before
        the client can see the end and close. Without `on_complete` a complete stream's last
        frame goes as soon as it is decoded.

        OpenAI-compatible chunks are forwarded as the provider's own text, not re-encoded —
        unless a secret had to be scrubbed from them (`redaction.StreamScrubber`: the text of
        a chunk that could begin a secret waits for the next one). Raises
        UpstreamProtocolError / TimeoutError / httpx errors on a failure mid-stream, after
        yielding what was decoded before the failure.
        """
        watch = StallWatch(self.stall_s)
        try:
            decoder, state = self.decoder, self.state
            scrubber = self.redactor.stream()
            chunks, self.held = self.held, []
            events, self.pending = self.pending, []
            while True:
                failure: Exception | None = None
                try:
                    for event, data in events:
                        if decoder.finished:
                            break
                        chunks += decode(decoder, event, data)
                except Exception as exc:  # what the client has not seen of this read goes first
                    failure = exc
                if self.rewrite is not None and chunks:
                    try:
                        chunks = self.rewrite(chunks)
                    except UpstreamProtocolError as exc:
                        chunks, failure = [], exc
                ended = failure is None and decoder.finished
                sent = b""
                if chunks or (decoder.finished and scrubber is not None):
                    sent, chars = frame(chunks, on_usage, scrubber, final=decoder.finished, state=state)
                    self.streamed_chars += chars
                    chunks = []
                if ended:
                    await self._drain(watch)
                    if on_complete is not None:
                        sent += on_complete()
                if sent:
                    yield self.redactor.bytes(sent)
                if ended:
                    return
                if failure is None and self._batches is not None:
                    watch.arm()  # (`watch.read`, spelled out: no coroutine around each read)
                    try:
                        events = await anext(self._batches)
                        continue
                    except asyncio.CancelledError:
                        if not watch.expired():
                            raise
                        failure = self._stalled()
                    except StopAsyncIteration:
                        failure = UpstreamProtocolError("the provider's stream ended before its end marker")
                    except TimeoutError:
                        failure = self._stalled()
                    except (UpstreamProtocolError, httpx.HTTPError) as exc:
                        failure = exc
                    finally:
                        watch.disarm()
                if failure is None:
                    return
                if not state.complete:
                    raise failure
                # Every choice sent its finish_reason: the answer is complete without the end marker.
                sent, chars = frame([], on_usage, scrubber, final=True, state=state)
                self.streamed_chars += chars
                if on_complete is not None:
                    sent += on_complete()
                if sent:
                    yield self.redactor.bytes(sent)
                return
        finally:
            watch.close()
            await self.aclose()

    def _stalled(self) -> TimeoutError:
        """The stall limit's error: its own text is empty, so say which limit, and its value."""
        return TimeoutError(f"the provider sent nothing for {self.stall_s:g} s (its stall limit)")

    async def _drain(self, watch: StallWatch) -> None:
        """Read what follows the end marker (usually just the end of the chunked body), so the
        connection goes back to the pool: a response closed unread takes its connection with
        it, and every streamed request would pay a new TCP (and TLS) handshake. At most
        DRAIN_S (or the stall limit, if shorter) in all."""
        batches = self._batches
        if batches is None:
            return
        due = asyncio.get_running_loop().time() + min(self.stall_s, DRAIN_S)
        with contextlib.suppress(Exception):
            while True:
                await watch.read(anext(batches), due)

    async def aclose(self) -> None:
        """Close the upstream response. Idempotent, and safe from any task at any time — also
        after the task iterating `frames()` was cancelled mid-iteration (its own close may have
        been cut short): a close with I/O left to do runs in a task of its own, which a
        cancelled caller cannot interrupt, and every later call waits for that same close."""
        batches, self._batches = self._batches, None
        if batches is not None:  # never waits: sse_batches has nothing to clean up
            with contextlib.suppress(RuntimeError):  # still running in a task being cancelled
                await batches.aclose()  # type: ignore[attr-defined]
        response = self._response
        if response is None:
            return
        if self._closing is None and not response.is_closed:  # a read to the end closes it
            self._closing = asyncio.get_running_loop().create_task(close_quietly(response))
        if self._closing is not None:
            await asyncio.shield(self._closing)
        self._response = None


async def close_quietly(response: httpx.Response) -> None:
    """A connection that fails while being closed is gone already: nothing is left to do."""
    with contextlib.suppress(httpx.HTTPError, OSError):
        await response.aclose()


def decode(decoder: StreamDecoder, event: str, data: str) -> Held:
    """One upstream event's chunks, each with the event's own JSON text when the decoder passes
    chunks through unchanged (so it can be forwarded without re-encoding)."""
    chunks = decoder.feed(event, data)
    if decoder.passthrough and len(chunks) == 1:
        return [(chunks[0], data)]
    return [(chunk, None) for chunk in chunks]


def frame(
    chunks: Held,
    on_usage: Callable[[dict[str, Any]], None],
    scrubber: StreamScrubber | None = None,
    *,
    final: bool = False,
    state: StreamState | None = None,
) -> tuple[bytes, int]:
    """Chunks as the client gets them — SSE `data:` frames, joined for one send — and their
    characters of content (`content_chars`). A chunk with its provider's own text goes as that
    text unless `scrubber` changed it; the final usage-only chunk goes to `on_usage` first
    (which may amend it: the cost). Text the scrubber still holds back when no
    `finish_reason` took it goes out before the usage chunk, or at the end when `final`.
    `state` sees every chunk as it is sent.

    Paid per streamed chunk, so the common one (`text_delta`: one choice, a delta of text
    only, not the last) is looked into once for the scrubber, the state and the count alike;
    any other goes through each one's general reading."""
    out = []
    chars = 0
    for chunk, raw in chunks:
        text = text_delta(chunk)
        if text is not None:
            if scrubber is not None and scrubber.chunk(chunk):
                raw = None
                text = chunk["choices"][0]["delta"]["content"]
            if state is not None:
                state.observe_text(chunk, text)
            chars += len(text)
            out.append(b"data: " + (raw.encode() if raw is not None else dumps(chunk)) + b"\n\n")
            continue
        if scrubber is not None and scrubber.chunk(chunk):
            raw = None
        if state is not None:
            state.observe(chunk)
        if chunk.get("usage") and not chunk.get("choices"):
            chars += _leftover(scrubber, out, state)
            on_usage(chunk)
            raw = None
        out.append(b"data: " + (raw.encode() if raw is not None else dumps(chunk)) + b"\n\n")
        chars += content_chars(chunk)
    if final:
        chars += _leftover(scrubber, out, state)
    return b"".join(out), chars


def text_delta(chunk: dict[str, Any]) -> str | None:
    """The text of the common chunk — one choice, index 0, a delta of `content` text only, no
    `finish_reason` — else None. Never raises."""
    try:
        (choice,) = chunk["choices"]
        delta = choice["delta"]
        if len(delta) == 1 and choice["finish_reason"] is None and choice["index"] == 0:
            text = delta["content"]
            if text.__class__ is str:
                return text  # type: ignore[no-any-return]
    except (LookupError, TypeError, ValueError):
        pass
    return None


def _leftover(scrubber: StreamScrubber | None, out: list[bytes], state: StreamState | None = None) -> int:
    rest = scrubber.leftover() if scrubber is not None else None
    if rest is None:
        return 0
    if state is not None:
        state.observe(rest)
    out.append(b"data: " + dumps(rest) + b"\n\n")
    return content_chars(rest)


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
