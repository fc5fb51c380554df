"""Adversary: judge events that the answering invocation would never queue, run by the real
`lambda_entry` and the real `Judging` (the demo rules: mock providers, a memory store).

An event is data (whoever may invoke the function can send one): it must not make the
function call a model that is not the reference tier (a model named as the "reference", a
tier judged against itself), count verdicts under names that are not tiers, or copy the
prompt into the log through a validation message. Each is a failed judgement before any
call: logged with the reason, counted `judge_failed`, nothing kept.
"""

from __future__ import annotations

import json
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.lambda_judge.test_judge_event import ROOT, entry, loop  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration
SECRET = "my-private-diagnosis-4711"
GOOD = {
    "request_id": "evt-ok",
    "body": {"model": "auto", "messages": [{"role": "user", "content": "hello there"}]},
    "answer": "hi",
    "tier": "budget",
    "reference": "premium",
}


def judgement_lines(out: str) -> dict[str, dict[str, Any]]:
    lines = {}
    for text in out.splitlines():
        if text.startswith("{"):
            record = json.loads(text)
            if record.get("type") == "judgement":
                lines[record["request_id"]] = record
    return lines


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"reference": "large"}, "sample: tier 'budget' and reference 'large' are not two different tiers"),
        ({"reference": "budget"}, "sample: tier 'budget' and reference 'budget' are not two different tiers"),
        ({"tier": "x" * 300}, "are not two different tiers of the rules file"),
        (
            {"body": {"messages": [{"role": "user", "content": [SECRET]}]}},
            "sample.body is not a chat-completions request (messages.0.",
        ),
    ],
    ids=["reference-is-a-model", "reference-is-its-tier", "tier-not-a-tier", "body-invalid"],
)
def test_a_hostile_judge_event_calls_nothing_and_is_a_failed_judgement(
    entry: ModuleType,  # noqa: F811
    capfd: pytest.CaptureFixture[str],
    change: dict[str, Any],
    error: str,
) -> None:
    # Before the fix: the first three were judged — the model "large" asked as the reference,
    # budget judged against itself, a verdict counted under a 300-character "tier"; the
    # invalid body's error quoted pydantic's input_value (the prompt) into the log line.
    rid = f"evt-{len(capfd.readouterr().out)}"
    summary = entry.lambda_handler(
        {"tier_router": "judge", "sample": {**GOOD, **change, "request_id": rid}}, SimpleNamespace()
    )
    assert summary == {"tier_router": "judge", "request_id": rid, "judged": True}  # run, not raised
    line = judgement_lines(capfd.readouterr().out)[rid]
    assert line["verdict"] is None
    assert error in line["error"]
    assert SECRET not in json.dumps(line)
    assert line["reference_model"] is None
    assert line["tokens"] == {"reference": None, "judge": None}  # no call made
    assert line["kept_prompt"] is False


def test_a_well_formed_event_is_still_judged(entry: ModuleType, capfd: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    summary = entry.lambda_handler({"tier_router": "judge", "sample": GOOD}, SimpleNamespace())
    assert summary["judged"] is True
    line = judgement_lines(capfd.readouterr().out)["evt-ok"]
    assert line["verdict"] in ("win", "tie", "loss")
    assert line["reference_model"] == "large"
