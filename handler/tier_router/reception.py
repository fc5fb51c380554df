"""How one attempt takes in a 200 answer: the per-attempt strategy of `forwarder.Forwarder.serve`.

- `Plain`: the whole body within `timeouts.total`, parsed (`Vectors`: an embeddings answer,
  one vector per input);
- `Streamed`: an event stream (by its content type), held back until its first content (text
  or tool call) within `timeouts.first_token` (`stream.hold_until_content`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, NamedTuple, Protocol, TypeVar

import httpx

from tier_router.providers.base import Adapter, StreamDecoder, UpstreamProtocolError
from tier_router.providers.openai_embeddings import check_vectors
from tier_router.redaction import Redactor
from tier_router.routing.engine import ModelRoute
from tier_router.settings import DEFAULT_MAX_SSE_LINE_BYTES
from tier_router.sse import Events, sse_batches
from tier_router.stream import Held, hold_until_content

A = TypeVar("A")


class Reception(Protocol[A]):
    """How one attempt takes in a 200 answer: the part of the candidate loop that differs
    between plain and streamed answers. `receive` raises one of `fallback.FAILURES` when the
    answer is not valid; on success it owns the response (read to its end, or kept open)."""

    def deadline(self, route: ModelRoute) -> float:
        """Seconds the whole attempt may take, from sending the request to `receive`'s return."""
        ...

    async def receive(self, adapter: Adapter, response: httpx.Response) -> A: ...


PlainAnswer = tuple[dict[str, Any], bytes | None]


class Plain:
    """A whole answer: the body, scrubbed of every secret the redactor knows, then parsed;
    `raw` is the body when it is the OpenAI answer as is."""

    __slots__ = ("redactor",)

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()

    def deadline(self, route: ModelRoute) -> float:
        return route.timeouts.total

    async def receive(self, adapter: Adapter, response: httpx.Response) -> PlainAnswer:
        content = self.redactor.bytes(await response.aread())
        data = adapter.parse(content)
        return data, content if adapter.passthrough else None


class Vectors(Plain):
    """An embeddings answer: a whole answer holding one vector per input (`check_vectors`)."""

    def __init__(self, inputs: int, redactor: Redactor) -> None:
        super().__init__(redactor)
        self.inputs = inputs

    async def receive(self, adapter: Adapter, response: httpx.Response) -> PlainAnswer:
        answer = await super().receive(adapter, response)
        check_vectors(answer[0], self.inputs)
        return answer


class HeldBack(NamedTuple):
    decoder: StreamDecoder
    batches: AsyncIterator[Events]
    held: Held
    pending: Events


class Streamed:
    """An event stream, read until its first content."""

    __slots__ = ("include_usage", "max_line")

    def __init__(self, include_usage: bool, max_line: int = DEFAULT_MAX_SSE_LINE_BYTES) -> None:
        self.include_usage = include_usage
        self.max_line = max_line

    def deadline(self, route: ModelRoute) -> float:
        return route.timeouts.first_token

    async def receive(self, adapter: Adapter, response: httpx.Response) -> HeldBack:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise UpstreamProtocolError(f"expected an event stream, got {content_type or 'no type'!r}")
        decoder = adapter.decoder(self.include_usage)
        batches = sse_batches(response, self.max_line)
        try:
            held, pending = await hold_until_content(batches, decoder)
        except BaseException:
            with contextlib.suppress(RuntimeError):
                await batches.aclose()  # type: ignore[attr-defined]
            raise
        return HeldBack(decoder, batches, held, pending)


PLAIN = Plain()
