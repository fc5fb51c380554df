"""Reading a provider's server-sent events: the parser, the batches a stream is read in, and
the per-read stall limit.

A stream is read one network read at a time: each read becomes one batch of complete events,
so per-read work (a send to the client) is not paid per event, and nothing waits for more data
than has come; the stall limit (`StallWatch`) is one timer per stream, not one per read.
Writing events to the client is `stream.OpenedStream.frames`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx

from tier_router.providers.base import UpstreamProtocolError
from tier_router.settings import DEFAULT_MAX_SSE_LINE_BYTES

Events = list[tuple[str, str]]
"""(event name, data) pairs; the name is "" for an unnamed event."""
T = TypeVar("T")


LONG_LINE = 4096
"""The start of a line shorter than this is re-joined with each read (at most this much copied
per read, as cheap as the old single buffer); a longer one is held as pieces, joined once."""


class SSEParser:
    """Bytes in, complete events out. Comments and ids are ignored; lines may end in LF, CRLF
    or CR (a CR at the end of a block waits for the next block: it may be half a CRLF).

    Linear in the bytes fed, however they are split: the start of a long line whose end has
    not come is kept as a list of pieces, joined once when its end arrives (never re-joined
    and re-searched per read). A line longer than `max_line` bytes, or an event whose data
    spans more than `max_line` bytes of reads, is an UpstreamProtocolError: a stream is not
    buffered without bound."""

    __slots__ = ("data", "event", "long", "long_from", "max_line", "rest", "size", "waiting")

    def __init__(self, max_line: int = DEFAULT_MAX_SSE_LINE_BYTES) -> None:
        self.event = ""
        self.data: list[str] = []
        self.rest = b""
        """The start of a short line whose end has not arrived yet."""
        self.long: list[bytes] = []
        """The pieces of a long one (and `waiting`, their length)."""
        self.waiting = 0
        self.size = 0
        """Bytes of the reads the current, unfinished event has spanned (an upper bound on its
        data: events that end within one read, the usual case, are never counted)."""
        self.max_line = max_line
        self.long_from = min(LONG_LINE, max_line)

    def feed(self, block: bytes) -> Events:
        if self.long:
            lines = self._continue_long(block)
        else:
            rest = self.rest
            lines = (rest + block).splitlines(keepends=True) if rest else block.splitlines(keepends=True)
        rest = b""
        if lines and lines[-1][-1:] != b"\n":  # the start of a line: held until its end comes
            rest = lines.pop()
            if len(rest) >= self.long_from:
                self._start_long(rest)
                rest = b""
        self.rest = rest
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
        if data:  # an event goes on into the next read: bound it by the reads it spans
            self.size = size = (0 if batch else self.size) + len(block)
            if size > self.max_line:
                raise UpstreamProtocolError(
                    f"the provider's stream sent an event larger than the limit of {self.max_line} bytes"
                )
        elif self.size:
            self.size = 0
        return batch

    def _start_long(self, piece: bytes) -> None:
        self.long, self.waiting = [piece], len(piece)
        if len(piece) > self.max_line:
            raise self._too_long()

    def _continue_long(self, block: bytes) -> list[bytes]:
        """The lines `block` completes, the long line held so far included: joined once, when
        a line end arrives; until then `block` is only added to the pieces."""
        lines = block.splitlines(keepends=True)
        long = self.long
        long.append(block)
        if not lines or (len(lines) == 1 and lines[0][-1:] not in (b"\n", b"\r")):
            self.waiting += len(block)
            if self.waiting > self.max_line:
                raise self._too_long()
            return []
        self.long, self.waiting = [], 0
        return b"".join(long).splitlines(keepends=True)

    def _too_long(self) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"the provider's stream sent a line longer than the limit of {self.max_line} bytes"
        )

    def close(self) -> Events:
        """At the end of the stream: the last line even without its line ending, and an event
        even without its blank line."""
        batch = self.feed(b"\n") if self.rest or self.long else []
        if self.data:
            batch.append((self.event, "\n".join(self.data)))
            self.event, self.data = "", []
        return batch


async def sse_batches(
    response: httpx.Response, max_line: int = DEFAULT_MAX_SSE_LINE_BYTES
) -> AsyncIterator[Events]:
    """Server-sent events as (event name, data) pairs, in the batches they arrived in: one list
    per network read. Holds nothing to clean up: closing it never waits. Raises
    UpstreamProtocolError on a line or event longer than `max_line` bytes. An uncompressed
    stream (the usual case) is read raw: no decoder and chunker layer per read."""
    parser = SSEParser(max_line)
    encoding = response.headers.get("content-encoding", "").strip().lower()
    raw = encoding in ("", "identity") and not response.is_stream_consumed  # (in memory: a mock's)
    blocks = response.aiter_raw() if raw else response.aiter_bytes()
    async for block in blocks:
        batch = parser.feed(block)
        if batch:
            yield batch
    batch = parser.close()
    if batch:
        yield batch


class StallWatch:
    """One stream's stall limit: every upstream read done within `seconds` of its start, or
    TimeoutError. Kept by one timer per stream, not one per read: the timer is armed for the
    read under way and left pending across later reads; when it fires it checks the read then
    under way (if any) and fires for real only when that read's own deadline is the one it was
    armed for, else re-arms for it. A fast stream creates one timer handle in all (a slow one,
    one per `seconds` of it); a stalled read is still cut at its own deadline, to the tick.

    Only the time spent awaiting a read counts: while the stream's task is elsewhere (sending
    to a slow client) nothing is under way, and a timer that fires then just lapses.

    `read(awaitable)` is the whole of it; a caller that pays it per read may spell it out
    instead, with no coroutine around the read: `arm()`, the await, `expired()` on a
    CancelledError (True: it was this limit's, and the task is uncancelled), `disarm()`."""

    __slots__ = ("due", "fired", "loop", "seconds", "task", "timer", "when")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.due: float | None = None
        """The deadline of the read under way; None between reads."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.when = 0.0
        """When the pending timer fires."""
        self.fired = False

    async def read(self, awaitable: Awaitable[T], due: float | None = None) -> T:
        """`await awaitable`, or TimeoutError once `seconds` have passed (or at the loop time
        `due`, if given: a deadline shared by several reads)."""
        self.arm(due)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.expired():
                raise TimeoutError from None
            raise
        finally:
            self.disarm()

    def arm(self, due: float | None = None) -> None:
        """A read starts (on the running loop, in the current task)."""
        loop = self.loop
        if loop is None:
            self.loop = loop = asyncio.get_running_loop()
        if due is None:
            due = loop.time() + self.seconds
        self.due = due
        self.task = asyncio.current_task(loop)
        if self.timer is None or self.when > due:
            if self.timer is not None:
                self.timer.cancel()
            self.when = due
            self.timer = loop.call_at(due, self._check)

    def expired(self) -> bool:
        """The read was cancelled: True when by this limit (then the task is uncancelled: the
        cancellation is spent, a TimeoutError stands for it), False when by anyone else."""
        return self.fired and self.task is not None and self.task.uncancel() == 0

    def disarm(self) -> None:
        """The read is over, however it ended."""
        self.due = None
        self.fired = False

    def _check(self) -> None:
        self.timer = None
        due = self.due
        if due is None or self.task is None or self.loop is None:  # between reads: lapses
            return
        if due <= self.when:
            self.fired = True
            self.task.cancel()
        else:
            self.when = due
            self.timer = self.loop.call_at(due, self._check)

    def close(self) -> None:
        """Cancel the pending timer (the stream is done). Idempotent."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
