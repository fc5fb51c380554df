"""Issue 14, part 1: streams that are good enough are served as good.

- A stream that sent `finish_reason` for every choice is complete even if it then closes (or
  is cut) without `data: [DONE]`: the client gets `[DONE]`, the request is `ok` and priced.
- An isolated chunk that is not JSON is skipped and counted (`bad_chunks` on the log line);
  more than `MAX_BAD_CHUNKS` and the stream failed, as before.

The real router (`tier-router serve`) in front of a scripted loopback provider, read by the
real `openai` SDK. The `solo` tier has one candidate, so nothing here can fail over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import openai
import pytest
from tier_router.providers.base import MAX_BAD_CHUNKS

from tests.support.stack import ROUTER_KEY
from tests.support.stream_script import End, Reply, StreamStack, chunk, stream_stack, usage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamStack]:
    with stream_stack(tmp_path_factory.mktemp("tolerant")) as stack:
        yield stack


class Asked(NamedTuple):
    text: str
    request_id: str
    chunks: list[Any]
    error: openai.APIError | None


def ask(stack: StreamStack, script: str, model: str = "solo", *, include_usage: bool = True) -> Asked:
    """What the SDK made of one streamed request: the text it reassembled, the chunks, and the
    error it raised (None when it raised nothing)."""
    client = openai.OpenAI(base_url=stack.router.url + "/v1", api_key=ROUTER_KEY, max_retries=0, timeout=20)
    chunks: list[Any] = []
    error = None
    with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": f"hi [script={script}]"}],
        stream=True,
        stream_options={"include_usage": True} if include_usage else openai.NOT_GIVEN,
    ) as response:
        request_id = response.headers["x-router-request-id"]
        try:
            for got in response.parse():
                chunks.append(got)
        except openai.APIError as exc:
            error = exc
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return Asked(text, request_id, chunks, error)


def test_a_finished_stream_that_closes_without_done_is_complete(stack: StreamStack) -> None:
    events = [chunk("", role=True), chunk("Hello"), chunk(" world"), chunk(finish="stop"), usage(7, 2)]
    stack.app.script("no-done", a=[Reply(events, end=End.CLOSE)])

    text, request_id, chunks, error = ask(stack, "no-done")

    assert error is None
    assert text == "Hello world"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    line = stack.line(request_id)
    assert line["outcome"] == "ok"
    assert (line["prompt_tokens"], line["completion_tokens"]) == (7, 2)
    assert line["cost_micro_usd"] == 7 * 1 + 2 * 4  # priced from the usage that came
    assert line["cost_estimated"] is False


def test_a_finished_stream_cut_before_its_usage_is_complete(stack: StreamStack) -> None:
    events = [chunk("", role=True), chunk("Bye"), chunk(finish="stop")]
    stack.app.script("cut-after-finish", a=[Reply(events, end=End.CUT)])

    text, request_id, _, error = ask(stack, "cut-after-finish")

    assert error is None
    assert text == "Bye"
    assert stack.line(request_id)["outcome"] == "ok"


def test_one_malformed_chunk_is_skipped_and_counted(stack: StreamStack) -> None:
    events = [
        chunk("", role=True),
        chunk("Hel"),
        '{"id": "chatcmpl-s", "choi',
        chunk("lo"),
        chunk(finish="stop"),
    ]
    stack.app.script("one-bad", a=[Reply([*events, usage(3, 2)])])

    text, request_id, _, error = ask(stack, "one-bad")

    assert error is None
    assert text == "Hello"
    line = stack.line(request_id)
    assert line["outcome"] == "ok"
    assert line["bad_chunks"] == 1


def test_more_malformed_chunks_than_the_limit_fail_the_stream(stack: StreamStack) -> None:
    bad = ["not json"] * (MAX_BAD_CHUNKS + 1)
    events = [chunk("", role=True), chunk("Hel"), *bad, chunk("lo"), chunk(finish="stop")]
    stack.app.script("many-bad", a=[Reply(events)])

    text, request_id, _, error = ask(stack, "many-bad")

    assert error is not None
    assert "not JSON" in str(error)
    assert text == "Hel"
    assert stack.line(request_id)["outcome"] == "stream_interrupted"


def test_an_unfinished_stream_without_done_still_fails(stack: StreamStack) -> None:
    """The tolerance is for complete answers only: without finish_reason, a close is a cut."""
    stack.app.script("unfinished", a=[Reply([chunk("", role=True), chunk("Half")], end=End.CLOSE)])

    text, request_id, _, error = ask(stack, "unfinished")

    assert error is not None
    assert "ended before its end marker" in str(error)
    assert text == "Half"
    assert stack.line(request_id)["outcome"] == "stream_interrupted"
