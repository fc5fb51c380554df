"""The pairwise judge, pure: what it is shown, reading its answers leniently, combining both orders."""

from __future__ import annotations

import json

import pytest
from tier_router.quality import judge
from tier_router.quality.judge import OrderVerdict, combine, parse
from tier_router.quality.rubric import ANSWER_FORMAT, DEFAULT_RUBRIC
from tier_router.quality.sample import Verdict
from tier_router.spend.reservation import bound

BODY = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}


# -- reading the judge's answer ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 8, "b": 3, "better": "A", "reason": "right"}',
        'Sure! Here is my verdict:\n```json\n{"a": 8, "b": 3, "better": "A"}\n```\nThanks.',
        '```\n{"A": 8.0, "B": "3", "Better": "a"}\n```',
        'I think {not json} but then {"a": 8, "b": 3, "better": "A"} trailing',
        '{"a": 8, "b": 3}',  # no preference: the scores say it
        '{"a": 8, "b": 3, "better": "first"}',  # an unknown preference: the scores say it
    ],
)
def test_parse_finds_the_verdict_in_fences_and_prose(text: str) -> None:
    reading = parse(text, "A")
    assert reading == OrderVerdict("A", "A", 8.0, 3.0)
    assert reading.preference == "served"
    assert reading.served_score == 8.0
    assert reading.reference_score == 3.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A is better.",
        '{"better": "A"}',  # no scores
        '{"a": 11, "b": 3, "better": "A"}',  # out of 0-10
        '{"a": -1, "b": 3, "better": "B"}',
        '{"a": true, "b": 3, "better": "B"}',
        '{"a": "eight", "b": 3, "better": "B"}',
        '{"a": NaN, "b": 3}',
    ],
)
def test_parse_refuses_garbage(text: str) -> None:
    assert parse(text, "A") is None


def test_parse_reads_tie_spellings_and_the_served_position() -> None:
    for word in ("tie", "TIE", "equal", "draw"):
        assert parse(json.dumps({"a": 5, "b": 5, "better": word}), "B").preference == "tie"  # type: ignore[union-attr]
    reading = parse('{"a": 2, "b": 9, "better": "B"}', "B")
    assert reading is not None
    assert reading.preference == "served"
    assert reading.served_score == 9


# -- combining both orders -----------------------------------------------------------------------


def order(served_as: str, preference: str, served: float = 7, reference: float = 7) -> OrderVerdict:
    other = "B" if served_as == "A" else "A"
    better = {"served": served_as, "reference": other, "tie": "tie"}[preference]
    a, b = (served, reference) if served_as == "A" else (reference, served)
    return OrderVerdict(served_as, better, a, b)


@pytest.mark.parametrize(
    ("first", "second", "verdict"),
    [
        ("served", "served", Verdict.WIN),
        ("served", "tie", Verdict.WIN),
        ("tie", "served", Verdict.WIN),
        ("reference", "reference", Verdict.LOSS),
        ("reference", "tie", Verdict.LOSS),
        ("tie", "reference", Verdict.LOSS),
        ("tie", "tie", Verdict.TIE),
        ("served", "reference", Verdict.TIE),  # position bias: the first shown won both times
        ("reference", "served", Verdict.TIE),
    ],
)
def test_combine(first: str, second: str, verdict: Verdict) -> None:
    assert combine(order("A", first), order("B", second)).verdict is verdict


def test_combine_scores_are_both_orders_averaged_over_ten() -> None:
    result = combine(order("A", "served", 8, 4), order("B", "served", 6, 3))
    assert (result.score, result.reference_score) == (0.7, 0.35)


# -- what the judge is shown ---------------------------------------------------------------------


def test_prompts_show_the_served_answer_as_a_then_as_b() -> None:
    first, second = judge.prompts(BODY, "SERVED-4", "REFERENCE-four")
    assert first[0] == second[0]
    assert first[0]["role"] == "system"
    assert DEFAULT_RUBRIC in first[0]["content"]
    assert ANSWER_FORMAT in first[0]["content"]
    one, two = first[1]["content"], second[1]["content"]
    assert "What is 2 + 2?" in one
    assert "What is 2 + 2?" in two
    assert one.index("<answer_A>\nSERVED-4") < one.index("<answer_B>\nREFERENCE-four")
    assert two.index("<answer_A>\nREFERENCE-four") < two.index("<answer_B>\nSERVED-4")
    custom = judge.prompts(BODY, "x", "y", rubric="Prefer brevity.")[0][0]["content"]
    assert custom.startswith("Prefer brevity.")
    assert DEFAULT_RUBRIC not in custom
    assert ANSWER_FORMAT in custom


def test_a_long_conversation_is_cut_to_its_budget_and_the_prompt_says_so() -> None:
    messages = [{"role": "user", "content": "START " + "a" * 60_000}, {"role": "user", "content": "LAST"}]
    shown, omitted = judge.conversation({"messages": messages})
    assert len(shown) < judge.CONVERSATION_CHARS + 100
    assert omitted > 30_000
    assert "START" in shown
    assert shown.endswith("LAST")
    user = judge.prompts({"messages": messages}, "a", "b")[0][1]["content"]
    assert f"{omitted} characters in its middle are left out" in user
    assert "left out" not in judge.prompts(BODY, "a", "b")[0][1]["content"]


@pytest.mark.parametrize("unit", ["x", "é", "字", '"', "\n", "\x00", "😀"])
def test_a_clipped_answer_bills_no_more_than_the_reservation_assumed(unit: str) -> None:
    """The judge's reservation is made before the reference answers, with the longest answer
    `clip` lets through: any real answer, clipped, must bound to no more (spend.reservation)."""
    answer = unit * 40_000
    clipped = judge.clip(answer)
    assert clipped.endswith(judge.CUT)
    assert judge.billed_bytes(clipped) <= judge.ANSWER_BYTES
    real = judge.judge_body("j", judge.prompts(BODY, "served", answer)[0], 400)
    worst = judge.judge_body("j", judge.worst_prompt(BODY, "served"), 400)
    assert bound(real, 4000).input_tokens <= bound(worst, 4000).input_tokens
    assert judge.clip("short") == "short"


def test_answer_text_of_a_completion_keeps_tool_calls_as_json() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    data = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    assert json.loads(judge.answer_text(data)) == [call]
    assert judge.answer_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    assert judge.answer_text({"choices": []}) == ""
    assert judge.answer_text({}) == ""


def test_the_emf_block_of_a_judgement_line() -> None:
    """`Judged` and `JudgedLoss` by tier (the Average of JudgedLoss is the loss rate); a line
    without a verdict counts `JudgeFailed` / `JudgeSkipped` instead — never request metrics."""
    from tier_router.quality.runner import add_emf

    loss = {"tier": "budget", "verdict": "loss", "skipped": None}
    add_emf(loss, 1_700_000_000.0)
    (directive,) = loss["_aws"]["CloudWatchMetrics"]
    assert directive == {
        "Namespace": "TierRouter",
        "Dimensions": [["tier"]],
        "Metrics": [{"Name": "Judged", "Unit": "Count"}, {"Name": "JudgedLoss", "Unit": "Count"}],
    }
    assert (loss["Judged"], loss["JudgedLoss"]) == (1, 1)
    win = {"tier": "budget", "verdict": "win", "skipped": None}
    add_emf(win, 0.0)
    assert (win["Judged"], win["JudgedLoss"]) == (1, 0)
    skipped = {"tier": "budget", "verdict": None, "skipped": "budget"}
    add_emf(skipped, 0.0)
    assert skipped["JudgeSkipped"] == 1
    assert "Judged" not in skipped
    assert skipped["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "JudgeSkipped", "Unit": "Count"}]
