"""Reading a request body: JSON only, bounded in size, time and shape, strict about what JSON is.

Refused with an OpenAI-style error: a non-JSON content type (415), a body over the limit
(413, as soon as it passes the limit — never buffered whole), a body that has not arrived
within `body_timeout_s` of the request (408, and the connection is closed: a client that
stalls after its headers, or trickles its body, holds nothing for longer), more JSON values
than `max_json_values` (413), nesting deeper than `max_json_depth` (400), invalid UTF-8,
invalid JSON, NaN/Infinity however written (also as a number too large for a float, `1e400`),
unpaired surrogates, or anything but an object (400).

The shape is checked on the raw bytes, before `json` builds anything: a 10 MiB body of
`[{},{},…]` is 3.5 million dicts — 320 MB — once parsed. Counting `{`, `[` and `,` bounds the
values a body can hold (containers, and array elements and object members: all but a
container's first follow a comma); the count runs at C speed and includes the characters of
strings, so only when it passes the limit are strings taken out and the structure counted
exactly. Real requests are far below the limits: 200 messages with tool calls, 100 tools
with 10-property schemas and 20 images (4 MB) count 16,400 values and nest 8 deep (a deeply
nested schema: ~30); base64 adds none.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tier_router.errors import APIError, ClientGone, RequestError, RouterError
from tier_router.routing.request import MAY_HOLD_SURROGATES, encodable
from tier_router.settings import Settings

Receive = Callable[[], Awaitable[dict[str, Any]]]
T = TypeVar("T")


def reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON: refuse them rather than forward them to a provider."""
    raise ValueError(f"{name} is not valid JSON")


class NonFiniteNumber(RequestError):
    """A JSON number too large for a float (`1e400`): Python would make it infinity, which
    a provider would then receive as the non-JSON token `Infinity`."""


def finite_float(text: str) -> float:
    """`parse_float` hook: the default conversion, then one comparison on the hot path."""
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan; NaN itself cannot come from a JSON number
        raise NonFiniteNumber(f"the number {text[:32]} is too large")
    return value


JSON_DECODER = json.JSONDecoder(parse_constant=reject_constant, parse_float=finite_float)
"""Built once: `json.loads(..., parse_constant=...)` would build a decoder per request."""


class BodyDeadlines:
    """`await deadlines.within(read)`: `read`, or TimeoutError once `timeout_s` have passed —
    without a timer per request (one costs more than the rest of reading a body that has
    already arrived, the usual case). Reads in flight are noted in a dict; one timer per
    process, armed only while reads are in flight, cancels those past their deadline (up to a
    quarter of `timeout_s`, at most 1 s, late) — a timer, not a task: nothing is left pending
    in a loop that stops."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.sweep_every = min(max(timeout_s / 4, 0.01), 1.0)
        self.reading: dict[asyncio.Task[Any], float] = {}
        """Each read in flight: its task, and its deadline on the loop's clock."""
        self.cut: set[asyncio.Task[Any]] = set()
        """Tasks the sweep cancelled (so their CancelledError becomes TimeoutError)."""
        self._armed: asyncio.AbstractEventLoop | None = None
        """The loop the sweep timer is armed on (None: not armed)."""

    async def within(self, read: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None, "called outside a task"
        self.reading[task] = loop.time() + self.timeout_s
        if self._armed is not loop:
            self._arm(loop)
        try:
            return await read
        except asyncio.CancelledError:
            if task in self.cut and task.uncancel() == 0:
                raise TimeoutError(f"the body did not arrive within {self.timeout_s:g} s") from None
            raise
        finally:
            del self.reading[task]
            if self.cut:
                self.cut.discard(task)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = loop
        loop.call_later(self.sweep_every, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._armed = None
        now = loop.time()
        for task, deadline in list(self.reading.items()):
            if deadline <= now and task not in self.cut and task.get_loop() is loop:
                self.cut.add(task)
                task.cancel()
        if self.reading:
            self._arm(loop)


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """What a request body may be: bytes, seconds to arrive, JSON values and nesting depth."""

    max_bytes: int
    timeout_s: float
    max_values: int
    max_depth: int
    deadlines: BodyDeadlines

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        s = settings
        deadlines = BodyDeadlines(s.body_timeout_s)
        return cls(s.max_body_bytes, s.body_timeout_s, s.max_json_values, s.max_json_depth, deadlines)


QUOTED = re.compile(rb'"[^"]*"')
"""A JSON string once its escapes are gone: it cannot fail but at the last quote, so a pass is
linear (a pattern that allows escapes retries from every escaped quote: quadratic)."""
BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
"""Opening brackets to +1 and closing ones to -1 (as signed bytes); everything else deleted."""
NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def values_in(raw: bytes) -> tuple[int, int]:
    """(containers, values): upper bounds on the arrays/objects and on all values in `raw`."""
    opens = raw.count(b"{") + raw.count(b"[")
    return opens, opens + raw.count(b",")


def depth_of(raw: bytes) -> int:
    """The deepest bracket nesting in `raw` (C-speed: translate, then a running sum)."""
    steps = array.array("b", raw.translate(BRACKET_STEPS, NOT_BRACKETS))
    return max(itertools.accumulate(steps), default=0)


def check_shape(raw: bytes, limits: BodyLimits) -> None:
    """Refuse a body holding more JSON values, or nesting deeper, than `limits` allow. Strings
    are counted too at first (it costs a few `bytes.count`); only a body over a limit by that
    count is counted again without its strings: the exact figure, in a few linear passes."""
    opens, values = values_in(raw)
    if values <= limits.max_values and (opens <= limits.max_depth or depth_of(raw) <= limits.max_depth):
        return  # the usual case (a big request: brackets in strings are not worth a pass)
    structure = without_strings(raw, limits.max_values)
    if structure is not None:
        opens, values = values_in(structure)
    if structure is None or values > limits.max_values:
        raise APIError(
            413,
            f"The request body holds more than this router's limit of {limits.max_values} JSON "
            "values (objects, arrays and their elements).",
            code="request_too_large",
        )
    if opens > limits.max_depth and depth_of(structure) > limits.max_depth:
        raise APIError(
            400,
            f"The request body nests JSON deeper than this router's limit of {limits.max_depth} levels.",
            code="invalid_json",
        )


def without_strings(raw: bytes, max_values: int) -> bytes | None:
    """`raw` without its strings; None when it holds more strings than `max_values` allow
    (each is a value or an object key). Escapes go first — an escaped backslash, then an
    escaped quote, as JSON pairs them, left to right — so every quote left delimits a string
    (UTF-8 continuation bytes are never `"` or `\\`)."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if unescaped.count(b'"') > 4 * max_values + 4:
        return None
    return QUOTED.sub(b"", unescaped)


async def read_json(
    headers: Mapping[str, str], receive: Receive, limits: BodyLimits, *, timed: bool = True
) -> dict[str, Any]:
    """The body as a JSON object, or APIError. `timed=False`: no deadline (Lambda, where the
    body comes whole with the event, and no timer may be left in a loop that stops)."""
    content_type = headers.get("content-type", "application/json")
    if "json" not in content_type:
        raise APIError(
            415,
            f"Content-Type must be application/json, got {content_type!r}.",
            code="unsupported_media_type",
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large(limits.max_bytes)
    try:  # one deadline for the whole body: a trickle of bytes does not extend it
        read = read_body(receive, limits.max_bytes)
        raw = await limits.deadlines.within(read) if timed else await read
    except TimeoutError:
        raise APIError(
            408,
            f"The request body did not arrive within this router's limit of {limits.timeout_s:g} s.",
            code="request_timeout",
            headers=CLOSE,  # what is still on its way is not read: the connection cannot be reused
        ) from None
    check_shape(raw, limits)
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
        body = JSON_DECODER.decode(raw.decode("utf-8-sig"))
    except NonFiniteNumber as exc:
        raise APIError(
            400,
            f"The request body is not valid JSON ({exc}: only finite numbers are accepted).",
            code="invalid_json",
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "invalid UTF-8" if isinstance(exc, UnicodeDecodeError) else "invalid JSON"
        raise APIError(400, f"The request body is not valid JSON ({reason}).", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    if MAY_HOLD_SURROGATES.search(raw) and not encodable(body):
        raise APIError(
            400, "The request body contains an unpaired surrogate (invalid Unicode).", code="invalid_json"
        )
    return body


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes `limit`. Reads ASGI messages directly:
    usually there is exactly one, and `Request.stream()` would wrap it in an async generator."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone("the client left while sending its body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk
        chunks.append(chunk)


CLOSE = {"connection": "close"}


def too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"The request body is larger than this router's limit of {limit} bytes.",
        code="request_too_large",
    )


class _NotRaised(RouterError):
    """Matches nothing: pydantic is not imported, so no ValidationError can have been raised."""


def validation_error() -> type[Exception]:
    """pydantic's ValidationError for an `except` clause, without importing pydantic: the request
    path imports it only for a body it cannot check directly (`routing.request.parse_chat`),
    and until then nothing can raise it."""
    core = sys.modules.get("pydantic_core")
    return core.ValidationError if core is not None else _NotRaised  # type: ignore[no-any-return]


def invalid_request(exc: Any) -> APIError:
    """A 400 naming the first problem of pydantic's ValidationError `exc`."""
    error = exc.errors(include_url=False, include_input=False)[0]
    param = ".".join(str(part) for part in error["loc"])
    return APIError(
        400, f"Invalid request: {param}: {error['msg']}.", code="invalid_request", param=param or None
    )
