"""The held-back stream's assembly: the chunks a client is sent, put back together into the
answer the validators read (`holdback.Assembly.reply`), and the early verdict on its text."""

from __future__ import annotations

from typing import Any

from tier_router.holdback import Assembly, early_failure
from tier_router.validators import Ask, Choice, Reply, ToolCall, Validator


def chunk(index: int, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"id": "c", "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_text_tool_calls_and_finish_reasons_of_interleaved_choices() -> None:
    state = Assembly(choices=2)
    for c in [
        chunk(0, role="assistant", content=""),
        chunk(1, role="assistant", content=""),
        chunk(0, content="Hel"),
        chunk(
            1,
            tool_calls=[
                {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}
            ],
        ),
        chunk(0, content="lo"),
        chunk(1, tool_calls=[{"index": 0, "function": {"arguments": '{"x"'}}]),
        chunk(
            1,
            tool_calls=[
                {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}}
            ],
        ),
        chunk(1, tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}]),
        chunk(0, finish="stop"),
        chunk(1, finish="tool_calls"),
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    ]:
        state.observe(c)

    assert state.reply() == Reply(
        (
            Choice("Hello", (), "stop"),
            Choice("", (ToolCall("f", '{"x": 1}'), ToolCall("g", "{}")), "tool_calls"),
        )
    )
    assert state.complete


def test_a_refusal_delta_and_malformed_chunks() -> None:
    state = Assembly()
    for c in [
        chunk(0, refusal="I can"),
        chunk(0, refusal="not."),
        {"choices": "nope"},
        {"choices": [None, {"index": "x", "delta": {"content": 5}}]},
        chunk(0, finish="stop"),
    ]:
        state.observe(c)

    (choice,) = state.reply().choices
    assert choice.refusal == "I cannot."
    assert choice.text == ""


class StartsWithNo(Validator):
    kind = "starts_with_no"

    def check(self, choice: Choice, ask: Ask) -> str | None:
        return None

    def early(self, text: str, ask: Ask) -> str | None:
        return "starts with no" if text.startswith("No") else None


def test_early_checks_read_the_first_choices_text_so_far() -> None:
    state = Assembly()
    state.observe(chunk(0, content="N"))
    assert early_failure((StartsWithNo(),), state, Ask()) is None
    state.observe(chunk(0, content="o way"))
    failure = early_failure((StartsWithNo(),), state, Ask())
    assert failure is not None
    assert (failure.validator, failure.reason) == ("starts_with_no", "starts with no")


def test_early_checks_wait_for_the_whole_answer_when_there_are_several_choices() -> None:
    state = Assembly(choices=2)
    state.observe(chunk(0, content="No way"))
    assert early_failure((StartsWithNo(),), state, Ask()) is None
