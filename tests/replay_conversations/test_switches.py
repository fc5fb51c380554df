"""Replay places each turn of a conversation as the router would: sticky by default, `sticky:
false` re-decided every turn, conversations independent of each other, forgotten after
`conversations.ttl_s`; `--against` counts the old rules in their own memory."""

from __future__ import annotations

from pathlib import Path

from tier_router.replay import Replayer

from tests.replay_conversations.logs import (
    START,
    conversation_lines,
    label,
    line,
    run,
    sets,
    turns,
    write_rules,
)

FIVE_SHORT_TURNS = ("And then?", "Go on.", "More, please.", "Thanks!")
"""Follow-ups whose conversation has 2, 4, 6, 8, 10 messages: past `max_messages: 6` on turn 4."""


def growing(opener: str) -> list[str]:
    return turns(opener, *FIVE_SHORT_TURNS)  # type: ignore[return-value]


def test_a_rule_boundary_crossed_as_the_conversation_grows(tmp_path: Path) -> None:
    """The rules (sticky) keep each conversation on `small` past the short-chat boundary (staying
    warm on small is cheaper than medium); the old rules (stickiness off, as before it existed)
    switch each conversation once, to standard's `medium`, when it grows past 6 messages."""
    new = write_rules(tmp_path / "new.yaml")
    old = write_rules(tmp_path / "old.yaml", conversations="conversations: {sticky: false}")
    log = []
    for n in range(3):
        log += conversation_lines(growing(f"Tell me about ship number {n}."), START + n * 7)
    data = run(tmp_path, log, new, against=old)
    by = sets(data)
    assert by["rules"]["conversations"] == by["against"]["conversations"] == 3
    assert by["rules"]["turns"] == by["against"]["turns"] == 15
    assert (by["rules"]["switches"], by["rules"]["max_switches"], by["rules"]["most_switches"]) == (0, 0, [])
    assert by["against"]["switches"] == 3
    assert by["against"]["switches_per_multi_turn"] == 1.0
    assert by["against"]["max_switches"] == 1
    assert sorted(m["conversation"] for m in by["against"]["most_switches"]) == sorted(
        label(turns(f"Tell me about ship number {n}.")[0]) for n in range(3)
    )
    assert all(m["turns"] == 5 for m in by["against"]["most_switches"])
    # the per-request tables stay as the rules decide each request alone (unchanged by stickiness)
    assert data["by_tier"]["budget"]["requests"] == 9
    assert data["by_tier"]["standard"]["requests"] == 6
    assert "logged" not in by  # no line logs the model that served it


def test_moving_the_boundary_changes_the_switch_count(tmp_path: Path) -> None:
    """Stickiness off for the whole file: the old boundary (6 messages) is crossed on turn 4,
    the new one (20 messages) never."""
    off = "conversations: {sticky: false}"
    new = write_rules(tmp_path / "new.yaml", max_messages=20, conversations=off)
    old = write_rules(tmp_path / "old.yaml", max_messages=6, conversations=off)
    log = conversation_lines(growing("Tell me about the harbour."), START)
    log += conversation_lines(growing("Tell me about the lighthouse."), START + 1)
    by = sets(run(tmp_path, log, new, against=old))
    assert (by["rules"]["switches"], by["against"]["switches"]) == (0, 2)


def alternating() -> list[dict]:
    return turns("Tell me about the sea.", "Why is it salty?", "I see.", "Why is it blue?", "Nice.")


def test_sticky_false_re_decides_every_turn(tmp_path: Path) -> None:
    """budget, premium, budget, premium, budget: with both rules `sticky: false` the model
    changes each time the rules change their mind (4 switches); sticky, the conversation stays
    on `small` (staying on it is cheaper than moving to `large`)."""
    off = write_rules(tmp_path / "off.yaml", max_messages=50, sticky_short=False, sticky_hard=False)
    on = write_rules(tmp_path / "on.yaml", max_messages=50)
    log = conversation_lines(alternating(), START)
    by = sets(run(tmp_path, log, off, against=on))
    assert by["rules"]["switches"] == 4
    assert by["rules"]["most_switches"] == [
        {"conversation": label(alternating()[0]), "switches": 4, "turns": 5}
    ]
    assert by["against"]["switches"] == 0
    # the file-wide switch does the same as every rule's
    file_off = write_rules(
        tmp_path / "file-off.yaml", max_messages=50, conversations="conversations: {sticky: false}"
    )
    assert sets(run(tmp_path, log, file_off))["rules"]["switches"] == 4


def test_a_conversation_opened_on_premium_moves_when_moving_is_cheaper(tmp_path: Path) -> None:
    """Sticky and cache-aware: the "why" opener goes to `large`; the next (short) turn's rule
    picks budget, and `small` at full price is cheaper than `large` with a warm cache: it moves
    once (Move.RULE), then stays on small even when a later turn asks "why" again."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50)
    bodies = turns("Why do ships float?", "Ok.", "Why do they rust?", "Ok.")
    replayer = Replayer(rules)
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(conversation_lines(bodies, START)) + "\n")
    with log.open("rb") as stream:
        replayer.run(stream)
    thread = replayer.turns.new.tally.threads[label(bodies[0])]
    assert (thread.turns, thread.switches, thread.model) == (4, 1, "small")


def test_two_conversations_with_different_prefixes_are_independent(tmp_path: Path) -> None:
    """Interleaved turn by turn: A opens on premium and moves to small once; B opens on budget
    and stays there through its "why" turns. Neither's memory places the other's turns; the
    same opener under another router key (`key`, the scope) is a third conversation."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50)
    a = turns("Why do cats purr?", "Ok.", "Fine.")
    b = turns("Hello there.", "Why is grass green?", "Why is the sky blue?")
    log = []
    for i in range(3):
        log += [line(a[i], START + 60 * i), line(b[i], START + 60 * i + 1)]
    log += [line(b[0], START + 200, key="other-team")]
    by = sets(run(tmp_path, log, rules))
    assert label(a[0]) != label(b[0])
    assert by["rules"]["conversations"] == 3
    assert by["rules"]["multi_turn"] == 2
    assert by["rules"]["turns"] == 7
    assert by["rules"]["most_switches"] == [{"conversation": label(a[0]), "switches": 1, "turns": 3}]
    assert by["rules"]["switches_per_multi_turn"] == 0.5


def test_a_conversation_idle_past_ttl_is_forgotten(tmp_path: Path) -> None:
    """Replay's counts forget a conversation idle for longer than `conversations.ttl_s` (here
    600 s; the router's store has expired it too): its next turn counts as a new conversation,
    not as a switch."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50, conversations="conversations: {ttl_s: 600}")
    bodies = turns("Why do ships float?", "Ok.", "Why again?")
    log = [line(bodies[0], START), line(bodies[1], START + 60), line(bodies[2], START + 60 + 601)]
    by = sets(run(tmp_path, log, rules))
    # turn 1 large, turn 2 moves to small (1 switch); turn 3 starts a new count
    assert (by["rules"]["conversations"], by["rules"]["turns"], by["rules"]["switches"]) == (2, 3, 1)
    assert by["rules"]["multi_turn"] == 1
