"""The SSE reader: events are the same however the network splits the bytes (any block
boundaries, LF / CRLF / CR line endings, multi-line data, comments), and each network read is
one batch, so nothing waits for more data than has arrived."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tier_router.providers.base import UpstreamProtocolError
from tier_router.sse import SSEParser, StallWatch, sse_batches


class Blocks(httpx.AsyncByteStream):
    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = blocks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for block in self.blocks:
            yield block


def read(blocks: list[bytes]) -> list[list[tuple[str, str]]]:
    async def collect() -> list[list[tuple[str, str]]]:
        response = httpx.Response(200, stream=Blocks(blocks))
        return [batch async for batch in sse_batches(response)]

    return asyncio.run(collect())


def flat(batches: list[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [event for batch in batches for event in batch]


values = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12
)
events = st.lists(
    st.tuples(
        st.sampled_from(["", "message_start", "content_block_delta"]),
        st.lists(values, min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=6,
)


def render(items: list[tuple[str, list[str]]], newline: str, comments: bool) -> bytes:
    text = ""
    for name, data_lines in items:
        if comments:
            text += f": keep-alive{newline}"
        if name:
            text += f"event: {name}{newline}"
        text += "".join(f"data: {line}{newline}" for line in data_lines)
        text += newline
    return text.encode()


@settings(max_examples=400, deadline=None)
@given(events, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.data())
def test_events_do_not_depend_on_where_the_bytes_are_split(items, newline, comments, data) -> None:
    raw = render(items, newline, comments)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    blocks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    expected = [(name, "\n".join(lines)) for name, lines in items]
    assert flat(read([raw])) == expected
    assert flat(read(blocks)) == expected


def test_one_batch_per_read() -> None:
    batches = read([b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n"])
    assert batches == [[("", "1"), ("", "2")], [("", "3")]]


def test_an_event_split_across_reads_comes_with_the_read_that_completes_it() -> None:
    assert read([b'data: {"a":', b" 1}\n", b"\n"]) == [[("", '{"a": 1}')]]


def test_a_utf8_character_split_across_reads_survives() -> None:
    text = "data: héllo 日本\n\n".encode()
    cut = text.index("日".encode()) + 1  # inside the 3-byte character
    assert flat(read([text[:cut], text[cut:]])) == [("", "héllo 日本")]


def test_a_last_event_without_its_blank_line_is_still_delivered() -> None:
    assert flat(read([b"data: [DONE]"])) == [("", "[DONE]")]


# -- `StallWatch`: the per-read stall limit, one timer per stream ----------------------------------


def test_a_read_returns_its_result_and_a_closed_watch_leaves_no_timer() -> None:
    async def main() -> None:
        watch = StallWatch(0.02)
        assert await watch.read(asyncio.sleep(0, result="chunk")) == "chunk"
        watch.close()
        await asyncio.sleep(0.1)  # a timer left behind would cancel us here
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(main())


def test_a_stalled_read_raises_timeout_error_and_the_task_is_not_left_cancelled() -> None:
    async def main() -> None:
        watch = StallWatch(0.02)
        with pytest.raises(TimeoutError):
            await watch.read(asyncio.sleep(5))
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        await asyncio.sleep(0)  # still usable
        watch.close()

    asyncio.run(main())


def test_a_cancellation_that_is_not_the_deadline_stays_a_cancellation() -> None:
    async def main() -> None:
        watch = StallWatch(5.0)
        task = asyncio.create_task(watch.read(asyncio.sleep(5)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        watch.close()

    asyncio.run(main())


def test_the_limit_is_per_read_however_long_the_stream_has_run() -> None:
    """The one timer is armed at the first read: reads that each take under the limit, and
    together far more than it, are never cut; a stalled read after them is, and not before its
    own limit has passed."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        watch = StallWatch(0.5)
        for _ in range(6):  # 0.6 s of reads of 0.1 s each
            assert await watch.read(asyncio.sleep(0.1, result=1)) == 1
        started = loop.time()
        with pytest.raises(TimeoutError):
            await watch.read(asyncio.sleep(30))
        assert loop.time() - started >= 0.5 - 0.01  # (the loop's clock resolution)
        watch.close()

    asyncio.run(main())


def test_time_spent_between_reads_does_not_count() -> None:
    """A timer that fires while the stream's task is elsewhere (sending to a slow client)
    lapses: the next read has its whole limit."""

    async def main() -> None:
        watch = StallWatch(0.05)
        await watch.read(asyncio.sleep(0))
        await asyncio.sleep(0.2)  # not a read: the pending timer fires meanwhile, and lapses
        assert await watch.read(asyncio.sleep(0.01, result="late")) == "late"
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        watch.close()

    asyncio.run(main())


def test_a_stream_of_many_reads_arms_one_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-read limit costs one timer handle per stream, not one per read."""
    armed: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            armed.append(when)
            return call_at(when, callback, *args, **kwargs)

        monkeypatch.setattr(loop, "call_at", counting)
        watch = StallWatch(30.0)
        for i in range(50):
            assert await watch.read(asyncio.sleep(0, result=i)) == i
        watch.close()

    asyncio.run(main())
    assert len(armed) == 1


def test_a_shared_deadline_shorter_than_the_limit_is_kept() -> None:
    """`due` (the drain's deadline over several reads) re-arms the timer earlier."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        watch = StallWatch(30.0)
        await watch.read(asyncio.sleep(0))  # armed for 30 s
        started = loop.time()
        with pytest.raises(TimeoutError):
            await watch.read(asyncio.sleep(30), started + 0.05)
        assert loop.time() - started < 29
        watch.close()

    asyncio.run(main())


# -- SSEParser, fed directly -----------------------------------------------------------------------


def test_parser_ignores_ids_retries_and_unknown_fields_and_resets_the_event_name() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 7\nretry: 100\nevent: ping\nfoo: bar\ndata:{}\n\ndata: x\n\n") == [
        ("ping", "{}"),
        ("", "x"),
    ]


def test_parser_keeps_a_half_line_and_a_trailing_cr_until_the_next_block() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []  # the CR may be half a CRLF
    assert parser.feed(b"\n\r\ndata: b") == [("", "a")]
    assert parser.close() == [("", "b")]
    assert parser.close() == []  # closed twice: nothing more


def test_parser_drops_an_event_without_data() -> None:
    assert SSEParser().feed(b"event: message_start\n\n: comment only\n\n") == []


# -- long lines: linear buffering, and a limit ------------------------------------------------------


def test_a_long_line_arriving_in_small_blocks_is_buffered_in_linear_time() -> None:
    """8 MiB of one line in 8 KiB reads. Re-joining and re-searching the buffer on every read
    copied ~4 GiB (quadratic: a 48 MB line took 37 s of CPU); pieces joined once take ms."""
    block = b"x" * 8192
    parser = SSEParser(max_line=16 * 1024 * 1024)
    started = time.process_time()
    assert parser.feed(b"data: ") == []
    for _ in range(1024):
        assert parser.feed(block) == []
    events = parser.feed(b"\n\n")
    elapsed = time.process_time() - started
    assert events == [("", "x" * (8192 * 1024))]
    assert elapsed < 0.3, f"{elapsed:.2f} s of CPU"


def test_a_line_longer_than_the_limit_is_a_protocol_error_as_soon_as_it_passes_it() -> None:
    parser = SSEParser(max_line=1000)
    assert parser.feed(b"data: " + b"x" * 600) == []
    with pytest.raises(UpstreamProtocolError, match="line longer than the limit of 1000 bytes"):
        parser.feed(b"x" * 600)  # no line end yet: refused before a full line is ever held


def test_an_event_whose_data_lines_add_up_past_the_limit_is_a_protocol_error() -> None:
    parser = SSEParser(max_line=1000)
    with pytest.raises(UpstreamProtocolError, match="event larger than the limit of 1000 bytes"):
        parser.feed(b"data: " + b"y" * 300 + b"\n" + (b"data: " + b"y" * 300 + b"\n") * 3)


def test_lines_and_events_up_to_the_limit_pass_however_they_are_split() -> None:
    parser = SSEParser(max_line=1000)
    line = b"data: " + b"z" * 900 + b"\n"
    assert parser.feed(line[:400]) == []
    assert parser.feed(line[400:800]) == []
    assert parser.feed(line[800:] + b"\r\n") == [("", "z" * 900)]
    assert parser.feed(b"data: a\r") == []  # CR-only line endings: still parsed, not held forever
    assert parser.feed(b"\rdata: b\r\r") == [("", "a")]  # the last CR may be half a CRLF
    assert parser.feed(b"data: c\r\r\n") == [("", "b"), ("", "c")]


def test_sse_batches_raises_the_protocol_error_of_an_oversized_line() -> None:
    async def collect() -> None:
        response = httpx.Response(200, stream=Blocks([b"data: ok\n\n", b"data: " + b"x" * 5000]))
        async for _ in sse_batches(response, max_line=4096):
            pass

    with pytest.raises(UpstreamProtocolError, match="4096 bytes"):
        asyncio.run(collect())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 12_000), min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.data(),
)
def test_long_lines_held_as_pieces_parse_the_same_however_they_are_split(lengths, newline, data) -> None:
    items = [("", [chr(ord("a") + i) * n]) for i, n in enumerate(lengths)]
    raw = render(items, newline, comments=False)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    blocks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    expected = [(name, "\n".join(lines)) for name, lines in items]
    assert flat(read(blocks)) == expected


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_stream_is_decoded_and_an_uncompressed_one_read_as_is(encoding: str) -> None:
    """Uncompressed streams are read raw (no decoder layer per read); a provider that
    compresses its stream still has it decoded, whatever the blocks' boundaries."""
    import zlib

    text = b'data: {"a": 1}\n\ndata: {"b": "\xc3\xa9"}\n\ndata: [DONE]\n\n'
    packer = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    packed = packer.compress(text) + packer.flush()

    async def collect(headers: dict[str, str], blocks: list[bytes]) -> list[tuple[str, str]]:
        response = httpx.Response(200, headers=headers, stream=Blocks(blocks))
        return flat([batch async for batch in sse_batches(response)])

    expected = [("", '{"a": 1}'), ("", '{"b": "é"}'), ("", "[DONE]")]
    halves = [packed[: len(packed) // 2], packed[len(packed) // 2 :]]
    assert asyncio.run(collect({"content-encoding": encoding}, halves)) == expected
    assert asyncio.run(collect({"content-encoding": "identity"}, [text[:7], text[7:]])) == expected
    assert asyncio.run(collect({}, [text])) == expected

    async def in_memory() -> list[tuple[str, str]]:  # a response built with its content (mock://)
        return flat([batch async for batch in sse_batches(httpx.Response(200, content=text))])

    assert asyncio.run(in_memory()) == expected


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_a_response_whose_body_was_already_read_is_parsed_from_its_content(encoding: str) -> None:
    """A transport that answers with bytes (httpx reads them at once: in-process fakes, the
    mock provider's kind) leaves no raw stream: the events come from the content."""
    import gzip

    text = b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    headers = {"content-encoding": encoding} if encoding else {}
    content = gzip.compress(text) if encoding else text

    async def collect() -> list[tuple[str, str]]:
        response = httpx.Response(200, headers=headers, content=content)
        return flat([batch async for batch in sse_batches(response)])

    assert asyncio.run(collect()) == [("", '{"a": 1}'), ("", "[DONE]")]
