"""`tier-router replay` end to end (`cli.main`) on a log of multi-turn conversations, and the
shipped sample log docs/replay.md replays (rules/samples/conversations.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tier_router.cli import main

from tests.replay_conversations import sample
from tests.replay_conversations.logs import START, conversation_lines, label, rules_text, turns

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_reports_conversations_before_and_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three growing conversations; the old rules (stickiness off) re-decide every turn (one
    switch each, to `medium`), the new ones keep each conversation on `small`."""
    monkeypatch.chdir(tmp_path)
    Path("new.yaml").write_text(rules_text())
    Path("old.yaml").write_text(rules_text(conversations="conversations: {sticky: false}"))
    openers = [f"Tell me about island {n}." for n in range(3)]
    log = []
    for n, opener in enumerate(openers):
        log += conversation_lines(turns(opener, "And then?", "Go on.", "More.", "Thanks!"), START + 3600 * n)
    Path("log.jsonl").write_text("\n".join(log) + "\n")

    assert (
        main(["replay", "log.jsonl", "--rules", "new.yaml", "--against", "old.yaml", "--html", "r.html"]) == 0
    )
    text = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("these ", "against "))
    }
    assert rows["these"][2:7] == ["3", "3", "15", "0", "0.00"]
    assert rows["against"][1:6] == ["3", "3", "15", "3", "1.00"]
    most = next(line for line in text.splitlines() if line.startswith("    against: "))
    assert sorted(most.removeprefix("    against: ").split(", ")) == sorted(
        f"{label(turns(o)[0])} 1/5" for o in openers
    )
    assert all(o not in text for o in openers)  # labels, never prompt text
    page = Path("r.html").read_text()
    assert "<h2>Conversations</h2>" in page
    assert all(o not in page for o in openers)

    assert main(["replay", "log.jsonl", "--rules", "new.yaml", "--against", "old.yaml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by = {s["set"]: s for s in data["conversations"]["sets"]}
    assert (by["rules"]["switches"], by["against"]["switches"]) == (0, 3)
    assert by["rules"]["source"] == "new.yaml"
    assert by["against"]["source"] == "old.yaml"
    # staying on small costs less, though medium's cache saves more per token on the last turns
    assert 0 < by["rules"]["cache"]["with_cache_micro_usd"] < by["against"]["cache"]["with_cache_micro_usd"]
    assert 0 < by["rules"]["cache"]["saved_micro_usd"] < by["against"]["cache"]["saved_micro_usd"]
    assert data["trend"] is None  # no line logs what was used


def test_the_sample_log_is_what_its_generator_writes() -> None:
    shipped = (ROOT / "rules" / "samples" / "conversations.jsonl").read_text(encoding="utf-8")
    assert shipped == "\n".join(sample.lines()) + "\n"


def test_the_sample_is_what_the_page_says() -> None:
    """docs/replay.md's description of the sample: 45 turns over three days, five per
    conversation, each turn repeating the earlier ones; the logged model per turn is what the
    rules pick without stickiness (checked by the `as logged` row equalling `against` there)."""
    records = [json.loads(line) for line in sample.lines()]
    assert len(records) == 45
    days = {int(r["ts"] - sample.START) // sample.DAY_S for r in records}
    assert days == {0, 1, 2}
    for first, *rest in (records[i : i + 5] for i in range(0, 45, 5)):
        for n, later in enumerate(rest, 2):
            assert later["body"]["messages"][: len(first["body"]["messages"])] == first["body"]["messages"]
            assert len(later["body"]["messages"]) == 2 * n
    page = (ROOT / "docs" / "replay.md").read_text(encoding="utf-8")
    assert "three days of an application's log from before sticky" in page
