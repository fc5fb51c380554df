"""An opened stream: `streamed_chars` counts what the client was sent of the answer (content,
reasoning, tool-call arguments — not roles, usage or finish reasons), for OpenAI-compatible
and Anthropic streams alike; and `aclose()` is idempotent and safe from any task, also after
the task that iterated `frames()` was cancelled mid-iteration — the upstream response is
closed, with no warning and no exception."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import anyio
import httpx
import pytest
from tier_router.forwarder import Forwarder
from tier_router.provider_keys import KeySource
from tier_router.providers.base import MAX_BAD_CHUNKS, content_chars
from tier_router.routing.loader import parse_rules
from tier_router.routing.request import parse_chat
from tier_router.sse import StallWatch
from tier_router.stream import OpenedStream

RULES = {
    "version": 1,
    "providers": {
        "o": {"kind": "openai", "base_url": "https://o.test/v1", "api_key_env": "O_KEY"},
        "a": {"kind": "anthropic", "base_url": "https://a.test", "api_key_env": "A_KEY"},
    },
    "models": {
        "gpt": {"provider": "o", "id": "gpt", "price": {"input": 1.0, "output": 1.0}},
        "claude": {"provider": "a", "id": "claude", "price": {"input": 1.0, "output": 1.0}},
    },
    "tiers": {"openai": ["gpt"], "anthropic": ["claude"]},
    "default_tier": "openai",
}


def data(chunk: dict[str, Any] | str) -> bytes:
    return b"data: " + (chunk if isinstance(chunk, str) else json.dumps(chunk)).encode() + b"\n\n"


def delta(**fields: Any) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": fields}]}


class Upstream(httpx.AsyncByteStream):
    """Sends `blocks` (one network read each), then stalls until closed; remembers the close.
    Closing takes a moment (a real close awaits the connection), so a close can be cut short."""

    def __init__(self, blocks: list[bytes], stall: bool = True) -> None:
        self.blocks = blocks
        self.stall = stall
        self.sent = asyncio.Event()
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, block in enumerate(self.blocks):
            if i == len(self.blocks) - 1:
                self.sent.set()
            yield block
        if self.stall:
            await asyncio.sleep(30)

    async def aclose(self) -> None:
        await asyncio.sleep(0.01)
        self.closed = True


async def open_stream(upstream: Upstream, tier: str = "openai") -> OpenedStream:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=upstream)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    body = {"model": tier, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    decision = parse_rules(RULES, "t.yaml").decide(parse_chat(body))
    keys = KeySource({"O_KEY": "sk-o", "A_KEY": "sk-a"})
    return await Forwarder(client, keys).open_stream(decision, body, include_usage=True)


def quietly(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `main`; fail on any warning or any error the event loop reports (a task exception
    never retrieved, an async generator that could not be closed)."""
    reported: list[dict[str, Any]] = []

    async def wrapped() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        await main()
        gc.collect()
        await asyncio.sleep(0.05)  # let finalizers and close tasks run

    gc.collect()  # earlier tests' garbage is theirs: collect it before recording
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(wrapped())
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert reported == []


# -- streamed_chars ------------------------------------------------------------------------------------


def test_content_chars_counts_text_reasoning_refusals_and_tool_arguments() -> None:
    assert content_chars(delta(role="assistant", content="")) == 0
    assert content_chars(delta(content="héllo")) == 5
    assert content_chars(delta(reasoning_content="think")) == 5  # DeepSeek
    assert content_chars(delta(reasoning="hmm")) == 3  # OpenRouter, vLLM
    assert content_chars(delta(refusal="no")) == 2
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "get", "arguments": '{"a":'}}
    assert content_chars(delta(tool_calls=[call, {"index": 1, "function": {"arguments": "{}"}}])) == 7
    assert content_chars(delta(function_call={"name": "f", "arguments": "{}"})) == 2
    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    assert content_chars(usage) == 0
    assert content_chars({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) == 0


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": ["x"]},
        {"choices": 3},
        {"choices": [{"delta": ["x"]}]},
        {"choices": [{"delta": {"tool_calls": "x"}}]},
        {"choices": [{"delta": {"tool_calls": [{"function": "f"}]}}]},
        {"choices": [{"delta": {"content": 5, "function_call": "f"}}]},
    ],
)
def test_content_chars_never_fails_on_a_malformed_chunk(chunk: dict[str, Any]) -> None:
    assert content_chars(chunk) == 0


def test_streamed_chars_counts_what_each_frame_sent() -> None:
    call = {"index": 0, "id": "t", "type": "function", "function": {"name": "get", "arguments": ""}}
    blocks = [
        data(delta(role="assistant", content="")) + data(delta(content="Hel")),  # held back: 3
        data(delta(content="lo")) + data(delta(reasoning_content="why")),  # same read: 5
        data(delta(tool_calls=[call]))
        + data(delta(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}])),
        data({"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 9}})
        + data("[DONE]"),
    ]

    async def main() -> None:
        upstream = Upstream(blocks, stall=False)
        opened = await open_stream(upstream)
        assert opened.streamed_chars == 0  # nothing sent yet, although content is held
        counts = []
        async for _ in opened.frames(lambda chunk: None):
            counts.append(opened.streamed_chars)
        assert counts == [3, 8, 10, 10]  # one frame a read: held, text + reasoning, tool call, usage
        assert upstream.closed

    quietly(main)


def test_streamed_chars_counts_translated_anthropic_text_and_tool_input() -> None:
    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

    message = {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3, "output_tokens": 0}}
    blocks = [
        event("message_start", {"message": message}),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi there"}}),
        event(
            "content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}}
        ),
        event(
            "content_block_delta",
            {"index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"q":1}'}},
        ),
        event("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        event("message_stop", {}),
    ]

    async def main() -> None:
        opened = await open_stream(Upstream(blocks, stall=False), tier="anthropic")
        async for _ in opened.frames(lambda chunk: None):
            pass
        assert opened.streamed_chars == len("Hi there") + len('{"q":1}')

    quietly(main)


def test_what_was_framed_before_a_failure_is_counted() -> None:
    garbage = b"data: garbage\n\n" * (MAX_BAD_CHUNKS + 1)  # one more than a stream may skip
    blocks = [data(delta(content="Hello")), data(delta(content=" world")) + garbage]

    async def main() -> None:
        opened = await open_stream(Upstream(blocks))
        frames: list[bytes] = []

        async def read() -> None:
            async for frame in opened.frames(lambda chunk: None):
                frames.append(frame)

        with pytest.raises(ValueError, match="not JSON"):
            await read()
        assert len(frames) == 2
        assert opened.streamed_chars == 11

    quietly(main)


def test_a_stream_of_many_reads_arms_one_stall_timer_and_one_for_the_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stall limit is kept per read by one timer per stream (`sse.StallWatch`), not one
    timer per read; the drain after the end marker has a shorter deadline of its own."""
    blocks = [data(delta(content=f"w{i} ")) for i in range(30)] + [data("[DONE]")]
    armed: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        opened = await open_stream(Upstream(blocks, stall=False))
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if isinstance(getattr(callback, "__self__", None), StallWatch):
                armed.append(when)
            return call_at(when, callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_at", counting)
        frames = [frame async for frame in opened.frames(lambda chunk: None)]
        assert len(frames) == 30
        monkeypatch.undo()

    quietly(main)
    assert len(armed) == 2


class Exchange:
    """What `answer_events` fills, recording each outcome with what the client had been sent."""

    def __init__(self) -> None:
        self.cost = self.usage = self.stream = self.route = None
        self.attempts: list[Any] = []
        self.outcomes: list[tuple[Any, int]] = []
        self.sent = 0

    def ended(self, outcome: Any, status: int | None = None) -> None:
        self.outcomes.append((outcome, self.sent))

    def total_cost(self, cost: int | None) -> int | None:
        return cost


class Spend:
    def price(self, route: Any, usage: dict[str, Any]) -> int:
        return 7


def test_done_goes_in_the_same_send_as_the_last_chunks_after_the_outcome_is_set() -> None:
    from tier_router.request_line import Outcome
    from tier_router.responses import DONE, answer_events

    usage = {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    finish = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    blocks = [data(delta(content="Hi")), data(finish) + data(usage) + data("[DONE]")]

    async def main() -> None:
        exchange = Exchange()
        opened = await open_stream(Upstream(blocks, stall=False))
        frames = []
        async for frame in answer_events(exchange, opened, Spend(), None):  # type: ignore[arg-type]
            frames.append(frame)
            exchange.sent += 1
        assert len(frames) == 2  # the held first chunk; then finish, usage and [DONE] in one send
        assert frames[-1].endswith(b"\n\n" + DONE)
        assert b'"finish_reason":"stop"' in frames[-1].replace(b" ", b"")
        assert b'"cost_usd":' in frames[-1]
        assert frames[-1].count(DONE) == 1
        assert exchange.outcomes == [(Outcome.OK, 1)]  # set before the client could see [DONE]
        assert exchange.cost == 7

    quietly(main)


def test_a_complete_answer_without_the_end_marker_still_ends_with_done_once() -> None:
    """Every choice finished, then the upstream closed without `[DONE]`: the client gets
    `[DONE]` once, in the send of the chunks that completed the answer's stream."""
    from tier_router.request_line import Outcome
    from tier_router.responses import DONE, answer_events

    finish = {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    blocks = [data(delta(content="Hi")), data(finish)]

    async def main() -> None:
        exchange = Exchange()
        opened = await open_stream(Upstream(blocks, stall=False))
        frames = [frame async for frame in answer_events(exchange, opened, Spend(), None)]  # type: ignore[arg-type]
        body = b"".join(frames)
        assert body.endswith(DONE)
        assert body.count(DONE) == 1
        assert [outcome for outcome, _ in exchange.outcomes] == [Outcome.OK]

    quietly(main)


# -- aclose ------------------------------------------------------------------------------------------


def test_aclose_is_idempotent_and_closes_an_unread_stream() -> None:
    async def main() -> None:
        upstream = Upstream([data(delta(content="Hi"))])
        opened = await open_stream(upstream)
        await asyncio.gather(opened.aclose(), opened.aclose())
        await opened.aclose()
        assert upstream.closed

    quietly(main)


def test_a_stream_read_to_its_end_needs_no_close_task() -> None:
    async def main() -> None:
        opened = await open_stream(Upstream([data(delta(content="Hi")) + data("[DONE]")], stall=False))
        async for _ in opened.frames(lambda chunk: None):
            pass
        assert opened._closing is None  # the response closed itself: no task was needed
        await opened.aclose()

    quietly(main)


async def cancel_then_close(
    consume: Callable[[OpenedStream], Coroutine[Any, Any, None]], cancels_itself: bool = False
) -> None:
    upstream = Upstream([data(delta(content="Hi")), data(delta(content=" there"))])
    opened = await open_stream(upstream)
    task = asyncio.create_task(consume(opened))
    await upstream.sent.wait()  # the last read is taken in ...
    await asyncio.sleep(0.01)  # ... and sent to the client
    assert opened.streamed_chars == 8
    if not cancels_itself:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.create_task(opened.aclose())  # from a fresh task, as the request lifecycle does
    await opened.aclose()
    assert upstream.closed
    assert opened.streamed_chars == 8


def test_cancelled_while_waiting_for_the_provider() -> None:
    async def consume(opened: OpenedStream) -> None:
        async for _ in opened.frames(lambda chunk: None):
            pass  # the next read stalls: cancelled inside frames()

    quietly(lambda: cancel_then_close(consume))


def test_cancelled_while_sending_to_the_client() -> None:
    """frames() is left suspended at a yield: its own `finally` never runs here."""

    async def consume(opened: OpenedStream) -> None:
        async for _ in opened.frames(lambda chunk: None):
            if opened.streamed_chars == 8:
                await asyncio.sleep(30)  # a slow client send

    quietly(lambda: cancel_then_close(consume))


def test_cancelled_by_a_cancel_scope_that_also_cuts_the_streams_own_close_short() -> None:
    """Starlette cancels a streaming response with an anyio cancel scope: every await in it is
    cancelled, also the one in frames()'s `finally`. The close still completes, once."""

    async def consume(opened: OpenedStream) -> None:
        with anyio.CancelScope() as scope:
            async for _ in opened.frames(lambda chunk: None):
                if opened.streamed_chars == 8:
                    asyncio.get_running_loop().call_later(0.01, scope.cancel)  # while frames() waits
        assert scope.cancelled_caught
        assert opened._closing is not None
        assert not opened._closing.done()  # the close frames() started was cut short
        raise asyncio.CancelledError  # as the cancelled request task would

    quietly(lambda: cancel_then_close(consume, cancels_itself=True))
