"""Issue 14, part 2: a stream that fails after its content started is finished by the next
candidate — the client (the real `openai` SDK) receives one complete answer, each piece of
text exactly once.

The real router (`tier-router serve`) in front of a scripted loopback provider with two sides:
`first` (a) fails mid-answer, `second` (b) continues it — from the partial answer sent as an
assistant prefill, or, when it rejects the prefill (400), by answering anew, the text the
client already has skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tier_router.providers.base import MAX_BAD_CHUNKS

from tests.resilience.test_tolerant_streams import ask
from tests.support.stream_script import End, Reply, StreamStack, chunk, stream_stack, usage

pytestmark = pytest.mark.integration

STALL_S = 0.5
PARTIAL = ["The quick ", "brown "]
SENT = "".join(PARTIAL)
WHOLE = "The quick brown fox jumps."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamStack]:
    with stream_stack(tmp_path_factory.mktemp("recovery"), stall=STALL_S) as stack:
        yield stack


def broken(end: End = End.CUT) -> Reply:
    return Reply([chunk("", role=True), *(chunk(piece) for piece in PARTIAL)], end=end)


def whole(*pieces: str, prompt: int = 20, completion: int = 3) -> Reply:
    events = [
        chunk("", role=True),
        *(chunk(p) for p in pieces),
        chunk(finish="stop"),
        usage(prompt, completion),
    ]
    return Reply([e.replace("chatcmpl-s", "chatcmpl-b") for e in events])


@pytest.mark.parametrize("end", [End.CUT, End.STALL, End.CLOSE], ids=["cut", "stall", "closed"])
def test_a_cut_stream_is_continued_from_a_prefill(stack: StreamStack, end: End) -> None:
    name = f"prefill-{end.value}"
    stack.app.script(name, a=[broken(end)], b=[whole("fox", " jumps.")])

    text, request_id, chunks, error = ask(stack, name, model="main")

    assert error is None
    assert text == WHOLE  # the partial answer and its continuation, each once
    assert {c.id for c in chunks} == {"chatcmpl-s"}  # one answer, in the first stream's id
    assert len([c for c in chunks if c.choices and c.choices[0].delta.role]) == 1
    (asked,) = stack.app.calls(name, "b")
    assert asked["messages"][-1] == {"role": "assistant", "content": SENT}
    line = stack.line(request_id)
    assert line["outcome"] == "ok"
    assert line["recovered"] == "prefill"
    assert [a["model"] for a in line["attempts"]] == ["first", "second"]
    # Usage adds both attempts: the failed one estimated (prompt, and streamed chars / 4).
    prompt = line["features"]["conversation_tokens"]
    assert line["prompt_tokens"] == prompt + 20
    assert line["completion_tokens"] == -(-len(SENT) // 4) + 3
    assert line["cost_micro_usd"] == (prompt + 20) * 1 + (-(-len(SENT) // 4) + 3) * 4
    assert line["cost_estimated"] is True
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == prompt + 20


def test_a_stream_past_the_bad_chunk_limit_is_recovered(stack: StreamStack) -> None:
    garbled = broken(End.DONE)
    garbled.events += ["not json"] * (MAX_BAD_CHUNKS + 1)
    stack.app.script("garbled", a=[garbled], b=[whole("fox", " jumps.")])

    text, request_id, _, error = ask(stack, "garbled", model="main")

    assert error is None
    assert text == WHOLE
    line = stack.line(request_id)
    assert line["recovered"] == "prefill"
    assert line["bad_chunks"] == MAX_BAD_CHUNKS + 1


def test_without_a_usage_chunk_the_log_still_adds_both_attempts(stack: StreamStack) -> None:
    stack.app.script("no-usage", a=[broken()], b=[whole("fox", " jumps.", prompt=30, completion=5)])

    text, request_id, chunks, error = ask(stack, "no-usage", model="main", include_usage=False)

    assert error is None
    assert text == WHOLE
    assert all(c.usage is None for c in chunks)
    line = stack.line(request_id)
    prompt, completion = line["features"]["conversation_tokens"] + 30, -(-len(SENT) // 4) + 5
    assert (line["prompt_tokens"], line["completion_tokens"]) == (prompt, completion)
    assert line["cost_micro_usd"] == prompt * 1 + completion * 4


def test_a_continuation_after_a_trailing_space_does_not_double_it(stack: StreamStack) -> None:
    """Anthropic trims a prefill's trailing whitespace, and its continuation then starts with it."""
    stack.app.script("space", a=[broken()], b=[whole(" fox", " jumps.")])

    text, _, _, error = ask(stack, "space", model="main")

    assert error is None
    assert text == WHOLE


def test_a_prefilled_answer_that_starts_over_is_not_repeated(stack: StreamStack) -> None:
    """A server that ignores the prefill and answers from the start: the repeat is skipped."""
    stack.app.script("restart", a=[broken()], b=[whole("The quick brown fox", " jumps.")])

    text, request_id, _, error = ask(stack, "restart", model="main")

    assert error is None
    assert text == WHOLE
    assert stack.line(request_id)["recovered"] == "prefill"


def test_a_rejected_prefill_is_regenerated_and_the_sent_prefix_skipped(stack: StreamStack) -> None:
    regenerated = whole("The qu", "ick brown f", "ox jumps.")
    stack.app.script("regen", a=[broken()], b=[Reply(status=400, error="prefill not supported"), regenerated])

    text, request_id, _, error = ask(stack, "regen", model="main")

    assert error is None
    assert text == WHOLE
    prefilled, anew = stack.app.calls("regen", "b")
    assert prefilled["messages"][-1]["role"] == "assistant"
    assert anew["messages"][-1]["role"] == "user"
    line = stack.line(request_id)
    assert (line["outcome"], line["recovered"]) == ("ok", "regenerate")
    assert [a["outcome"] for a in line["attempts"]] == ["ok", "http_400", "ok"]


def test_a_regenerated_answer_that_differs_ends_with_the_error_event(stack: StreamStack) -> None:
    stack.app.script("differs", a=[broken()], b=[Reply(status=400), whole("A different answer.")])

    text, request_id, _, error = ask(stack, "differs", model="main")

    assert error is not None
    assert "does not begin with the text sent" in str(error)
    assert text == SENT  # nothing repeated, nothing invented
    assert stack.line(request_id)["outcome"] == "stream_interrupted"


def test_a_tool_call_cut_mid_arguments_is_not_recovered(stack: StreamStack) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"q": "'}}
    events = [
        chunk(role=True, tool_calls=[call]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": "ab"}}]),
    ]
    stack.app.script("tool", a=[Reply(events, end=End.CUT)], b=[whole("never")])

    _, request_id, chunks, error = ask(stack, "tool", model="main")

    assert error is not None
    assert stack.app.calls("tool", "b") == []
    assert stack.line(request_id)["outcome"] == "stream_interrupted"
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)  # what arrived is broken, and the stream said so with an error


def test_without_a_next_candidate_the_error_event_stays(stack: StreamStack) -> None:
    stack.app.script("alone", a=[broken()])

    text, request_id, _, error = ask(stack, "alone", model="solo")

    assert error is not None
    assert text == SENT
    line = stack.line(request_id)
    assert line["outcome"] == "stream_interrupted"
    assert "recovered" not in line


def test_recovery_can_be_turned_off(tmp_path) -> None:
    """`routing.max_stream_recoveries: 0`: a stream cut after content ends with the error event,
    and the next candidate is never asked."""
    with stream_stack(tmp_path, routing={"max_stream_recoveries": 0}) as off:
        off.app.script("off", a=[broken()], b=[whole("fox", " jumps.")])
        text, request_id, _, error = ask(off, "off", model="main")
        assert error is not None
        assert text == SENT
        assert off.app.calls("off", "b") == []
        line = off.line(request_id)
        assert line["outcome"] == "stream_interrupted"
        assert "recovered" not in line
