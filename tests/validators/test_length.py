"""`min_length` / `max_length`: characters of the answer's text; tool-call answers pass
min_length; max_length decides early; options are a bare non-negative integer."""

from __future__ import annotations

import pytest
from tier_router.validators import Ask, Choice, Failure, Reply, ToolCall, build_validators, validate
from tier_router.validators.length import MaxLength, MinLength

from tests.support.answers import completion, message, reply

ASK = Ask()


def test_min_length_counts_characters_without_surrounding_whitespace() -> None:
    check = MinLength.configure(5)
    assert check.check(Choice("hello"), ASK) is None
    assert check.check(Choice("héllo"), ASK) is None  # code points, not bytes
    assert check.check(Choice("  hi  \n\n\n"), ASK) == "the answer has 2 characters, fewer than 5"
    assert check.check(Choice(""), ASK) == "the answer has 0 characters, fewer than 5"


def test_min_length_passes_tool_call_answers() -> None:
    assert MinLength.configure(20).check(Choice("", (ToolCall("f", "{}"),)), ASK) is None


def test_max_length_counts_all_text_and_decides_early() -> None:
    check = MaxLength.configure(10)
    assert check.check(Choice("0123456789"), ASK) is None
    assert check.check(Choice("0123456789!"), ASK) == "the answer has 11 characters, more than 10"
    assert check.early("01234", ASK) is None
    assert check.early("0123456789abc", ASK) == "the answer has 13 characters, more than 10"


def test_a_megabyte_answer() -> None:
    huge = "word " * 200_000
    assert MinLength.configure(20).check(Choice(huge), ASK) is None
    assert (
        MaxLength.configure(4000).check(Choice(huge), ASK)
        == "the answer has 1000000 characters, more than 4000"
    )


def test_only_the_second_choice_fails_and_parts_count() -> None:
    parts = [{"type": "text", "text": "short"}, {"type": "image_url", "image_url": {"url": "x"}}]
    got = validate(
        build_validators([{"min_length": 10}], {}),
        Reply.of(completion(message("long enough text"), message(parts))),
        ASK,
    )
    assert got == Failure("min_length", "the answer has 5 characters, fewer than 10", 1)
    assert validate(build_validators([{"max_length": 3}], {}), reply("abc", "abcd"), ASK).choice == 1


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("min_length", r"on\[0\]\.min_length: min_length needs a number of characters: \{min_length: 20\}"),
        ({"min_length": "20"}, r"on\[0\]\.min_length: min_length must be an integer, not a string"),
        ({"min_length": 2.5}, r"on\[0\]\.min_length: min_length must be an integer, not a number"),
        ({"max_length": True}, r"on\[0\]\.max_length: max_length must be an integer, not a boolean"),
        ({"max_length": -1}, r"on\[0\]\.max_length: max_length must be between 0 and 10000000 \(got -1\)"),
        ({"max_length": {"chars": 3}}, r"on\[0\]\.max_length: max_length takes a number of characters"),
    ],
)
def test_bad_options_fail_naming_the_entry(item: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_validators([item], {})
