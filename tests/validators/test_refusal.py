"""`refusal`: the shipped patterns catch the usual refusals and non-answers and let ordinary
openings through; options replace or extend them; `message.refusal` and empty answers fail;
`early` decides on a stream's first characters without being fooled by a cut-off word."""

from __future__ import annotations

import pytest
from tier_router.validators import (
    Ask,
    Choice,
    Failure,
    Reply,
    ToolCall,
    build_one,
    build_validators,
    validate,
)
from tier_router.validators.refusal import DEFAULT_PATTERNS, Refusal

from tests.support.answers import completion, message, reply

CHECK = Refusal.configure(None)
ASK = Ask()

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I’m sorry, but I can’t assist with that request.",
    "I am sorry, I cannot provide that information.",
    "Sorry, but I won't do that.",
    "I apologize, but I'm unable to comply with this request.",
    "I cannot help with creating malware.",
    "I can't assist with that.",
    "I can't help.",
    "I cannot help you with that.",
    "We can't help with this request.",
    "I won't provide instructions for that.",
    "I'm unable to help with this request.",
    "I am not able to provide medical advice.",
    "Unfortunately, I cannot share that.",
    "I must respectfully decline.",
    "  **I'm sorry, but I can't help with that.**",
    '"I cannot help with that," I said.',
    "As an AI language model, I do not have personal opinions.",
    "Good question. As an AI language model, I cannot browse the internet.",
    "As a large language model, I don't have feelings.",
]
BENIGN = [
    "Sorry for the delay, here is the report you asked for.",
    "Sorry about that! Here's the corrected version:",
    "I'm sorry to hear that. Here's what you can do next.",
    "I'm sorry for the confusion; the right answer is 42.",
    "I cannot stress enough how important backups are.",
    "I can't believe how simple this turned out to be: use a set.",
    "I can't help but notice the bug is on line 3.",
    "I cannot help noticing that the loop never ends.",
    "I'm unable to reproduce the bug, but here is what I tried.",
    "Unfortunately, the API was deprecated in 2023; use the v2 endpoint.",
    "The model said 'I cannot help with that' in the logs; here is why.",
    "Here is a summary. The phrase as an AI language model is common in bad outputs.",
    "We can't rely on that function; use this instead.",
    "Declining balances are handled in step 3.",
]


@pytest.mark.parametrize("text", REFUSALS)
def test_refusals_fail(text: str) -> None:
    reason = CHECK.check(Choice(text), ASK)
    assert reason is not None
    assert reason.startswith("the answer reads as a refusal (pattern ")


@pytest.mark.parametrize("text", BENIGN)
def test_ordinary_openings_pass(text: str) -> None:
    assert CHECK.check(Choice(text), ASK) is None


def test_the_reason_names_the_pattern_not_the_text() -> None:
    reason = CHECK.check(Choice("As an AI language model, I refuse. secret-123"), ASK)
    assert (
        reason
        == f"the answer reads as a refusal (pattern {len(DEFAULT_PATTERNS) - 1}, in its first 300 characters)"
    )


def test_only_the_start_is_searched() -> None:
    late = "Here is the plan. " * 20 + "As an AI language model, I cannot do more."
    assert len(late) > 300
    assert CHECK.check(Choice(late), ASK) is None
    wider = Refusal.configure({"within": 1000})
    assert wider.check(Choice(late), ASK) is not None


def test_message_refusal_and_empty_answers_fail() -> None:
    assert CHECK.check(Choice("", refusal="I can't do that"), ASK) == "the model refused (message.refusal)"
    assert CHECK.check(Choice(""), ASK) == "empty answer"
    assert CHECK.check(Choice(" \n\t"), ASK) == "empty answer"
    assert CHECK.check(Choice("", (ToolCall("f", "{}"),)), ASK) is None


def test_options_replace_or_extend_the_patterns() -> None:
    only = Refusal.configure({"patterns": ["(?i)^nope"]})
    assert only.check(Choice("Nope, not today"), ASK) is not None
    assert only.check(Choice("I'm sorry, but I can't help with that."), ASK) is None
    more = Refusal.configure({"extra_patterns": ["(?i)^i'd rather not"]})
    assert more.check(Choice("I'd rather not say."), ASK) == (
        f"the answer reads as a refusal (pattern {len(DEFAULT_PATTERNS)}, in its first 300 characters)"
    )
    assert more.check(Choice("I cannot help with that."), ASK) is not None
    none = Refusal.configure({"patterns": []})
    assert none.check(Choice("I cannot help with that."), ASK) is None
    assert none.check(Choice(""), ASK) == "empty answer"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"paterns": ["x"]},
            r"on\[0\]\.refusal: unknown option 'paterns' \(known: extra_patterns, patterns, within\)",
        ),
        ({"patterns": "x"}, r"on\[0\]\.refusal: patterns must be a list of strings, not a string"),
        (
            {"patterns": ["ok", 3]},
            r"on\[0\]\.refusal: patterns\[1\] must be a non-empty string, not an integer",
        ),
        (
            {"extra_patterns": ["(unclosed"]},
            r"on\[0\]\.refusal: extra_patterns\[0\]: invalid regex '\(unclosed': missing \)",
        ),
        ({"within": 0}, r"on\[0\]\.refusal: within must be between 1 and 100000 \(got 0\)"),
        ({"within": "300"}, r"on\[0\]\.refusal: within must be an integer, not a string"),
        ({"within": True}, r"on\[0\]\.refusal: within must be an integer, not a boolean"),
        ("strict", r"on\[0\]\.refusal: refusal takes a mapping of options"),
    ],
)
def test_bad_options_fail_at_load_naming_the_entry(options: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_validators([{"refusal": options}], {})


def test_a_named_entry_reports_under_its_name() -> None:
    from tier_router.validators import build_named

    named = build_named({"no-apology": {"refusal": {"patterns": ["(?i)^i.?m sorry"]}}})
    got = validate(build_validators(["no-apology"], named), reply("I'm sorry for the wait"), ASK)
    assert got == Failure(
        "no-apology", "the answer reads as a refusal (pattern 0, in its first 300 characters)"
    )
    assert isinstance(build_one("refusal", {}), Refusal)


def test_only_the_second_choice_fails() -> None:
    got = validate(
        (CHECK,), Reply.of(completion(message("Here you go."), message("I cannot help with that."))), ASK
    )
    assert got is not None
    assert got.choice == 1


def test_content_as_parts() -> None:
    parts = [{"type": "text", "text": "I'm sorry, "}, {"type": "text", "text": "but I can't help with that."}]
    assert validate((CHECK,), Reply.of(completion(message(parts))), ASK) is not None


@pytest.mark.parametrize(
    ("prefix", "decided"),
    [
        ("I'm sorry, but I ca", False),  # could go on "...I can certainly help"
        ("I'm sorry, but I can't", False),  # the match touches the end: wait for one more character
        ("I'm sorry, but I can't help", True),
        ("Sorry for the delay, here", False),
        ("As an AI language model", False),
        ("As an AI language model, I", True),
    ],
)
def test_early_decides_once_the_match_cannot_be_undone(prefix: str, decided: bool) -> None:
    assert (CHECK.early(prefix, ASK) is not None) is decided


def test_early_past_the_window_is_final() -> None:
    """Only the window is searched, by `check` and `early` alike (`$` is the window's end)."""
    within = Refusal.configure({"patterns": ["(?i)sorry$"], "within": 10})
    assert within.early("I am sorry", ASK) is None  # exactly the window, and more may come
    assert within.check(Choice("I am sorry"), ASK) is not None
    longer = "I am sorry, no"
    assert within.early(longer, ASK) == within.check(Choice(longer), ASK) is not None


def test_hostile_texts() -> None:
    huge = "a" * 1_000_000
    assert CHECK.check(Choice(huge), ASK) is None
    assert CHECK.early(huge, ASK) is None
    assert CHECK.check(Choice("\ud800I cannot help with that"), ASK) is not None
    assert CHECK.check(Choice("I cannot help with that \udfff"), ASK) is not None
    assert CHECK.check(Choice("\x00\x01\ufffe"), ASK) is None
