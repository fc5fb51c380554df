"""The mock as the demo's weak model and its judge (`shallow_above_tokens`, `providers.mock.judge`)."""

from __future__ import annotations

import json

import pytest
from tier_router.providers.mock import check_url

from tests.mock.test_answers import answer, content


def judging(a: str, b: str) -> str:
    conversation = "<conversation>\n[user] hi\n</conversation>"
    return f"{conversation}\n\n<answer_A>\n{a}\n</answer_A>\n\n<answer_B>\n{b}\n</answer_B>"


def test_a_long_prompt_gets_a_shallow_answer_and_a_short_one_does_not() -> None:
    url = "mock://fast?shallow_above_tokens=30"
    assert "(shallow)" not in content(answer("short question", url))
    assert "(shallow)" in content(answer("a long question " * 40, url))
    assert "(shallow)" not in content(answer("a long question " * 40, "mock://fast"))


def test_the_judge_scores_a_shallow_answer_lower_in_either_order() -> None:
    shallow, good = (
        "[mock-small via mock:fast] (shallow) You said: x",
        "[mock-large via mock:smart] You said: x",
    )
    first = json.loads(content(answer(judging(shallow, good), "mock://smart")))
    second = json.loads(content(answer(judging(good, shallow), "mock://smart")))
    assert (first["a"], first["b"], first["better"]) == (3, 8, "B")
    assert (second["a"], second["b"], second["better"]) == (8, 3, "A")
    tie = json.loads(content(answer(judging(good, good), "mock://smart")))
    assert tie["better"] == "tie"
    assert tie["a"] == tie["b"] == 8


def test_a_prompt_with_one_answer_is_not_judged() -> None:
    text = content(answer("<answer_A>\nx\n</answer_A> and nothing else", "mock://smart"))
    assert text.startswith("[")
    assert "You said" in text


@pytest.mark.parametrize("value", ["0", "-3", "many", ""])
def test_shallow_above_tokens_must_be_a_positive_count(value: str) -> None:
    with pytest.raises(ValueError, match="shallow_above_tokens"):
        check_url(f"mock://fast?shallow_above_tokens={value}")
