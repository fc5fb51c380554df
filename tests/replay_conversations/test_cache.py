"""Cache savings, checked by hand: a turn on its previous turn's model within `cache_ttl_s`
reads that turn's prompt tokens at `cached_input` instead of `input`."""

from __future__ import annotations

from pathlib import Path

from tests.replay_conversations.logs import START, line, run, sets, turns, write_rules


def usage(prompt: int, completion: int = 100) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion}


def test_savings_by_hand(tmp_path: Path) -> None:
    """small: input 0.10, cached_input 0.01, output 0.40 µ$/token. Logged usage:

    turn 1 (t=0):     1000 + 100 out, nothing cached        0.10*1000 + 0.40*100       = 140
    turn 2 (t=60):    2000 + 100, warm: turn 1's 1000 cached
                      without 0.10*2000 + 40 = 240;  with 0.10*1000 + 0.01*1000 + 40 = 150
    turn 3 (t=1060):  3000 + 100, cold (> 300 s after turn 2)  0.10*3000 + 40         = 340
    turn 4 (t=1120):  2500 + 100, warm: turn 3's prompt is larger, so all 2500 cached
                      without 0.10*2500 + 40 = 290;  with 0.01*2500 + 40 = 65

    cached 1000 + 2500 = 3500 tokens; without 140+240+340+290 = 1010; with 140+150+340+65 = 695;
    saved 315 = 3500 * (0.10 - 0.01)."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50)
    bodies = turns("Tell me a story.", "More.", "Again.", "Shorter, please.")
    log = [
        line(bodies[0], START, usage=usage(1000)),
        line(bodies[1], START + 60, usage=usage(2000)),
        line(bodies[2], START + 1060, usage=usage(3000)),
        line(bodies[3], START + 1120, usage=usage(2500)),
    ]
    rules_set = sets(run(tmp_path, log, rules))["rules"]
    assert rules_set["switches"] == 0
    assert rules_set["cache"] == {
        "cached_tokens": 3500,
        "priced_turns": 4,
        "without_cache_micro_usd": 1010,
        "with_cache_micro_usd": 695,
        "saved_micro_usd": 315,
        "saved_usd": "0.000315",
    }


def test_a_switch_reads_nothing_from_the_cache(tmp_path: Path) -> None:
    """`sticky: false`: turn 2 goes to premium's `large` (a switch: cold, nothing cached), turn
    3 back to `small` (another switch, its cache from turn 1 not counted: it is not the
    previous turn's model). large: 3.00 in, 15.00 out.

    small 0.10*1000 + 0.40*100 = 140; large 3.00*1200 + 15*100 = 5100; small 0.10*1400 + 40 = 180."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50, sticky_short=False, sticky_hard=False)
    bodies = turns("Tell me a story.", "Why so short?", "Ok.")
    log = [
        line(b, START + 10 * i, usage=usage(p))
        for i, (b, p) in enumerate(zip(bodies, (1000, 1200, 1400), strict=True))
    ]
    rules_set = sets(run(tmp_path, log, rules))["rules"]
    assert rules_set["switches"] == 2
    assert rules_set["cache"]["cached_tokens"] == 0
    assert rules_set["cache"]["without_cache_micro_usd"] == rules_set["cache"]["with_cache_micro_usd"] == 5420


def test_without_ts_every_turn_is_as_at_the_line_before(tmp_path: Path) -> None:
    """A log without `ts` happens all at once: every same-model turn is warm; the turns are
    counted as untimed."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50)
    bodies = turns("Tell me a story.", "More.")
    log = [line(bodies[0], usage=usage(1000)), line(bodies[1], usage=usage(2000))]
    data = run(tmp_path, log, rules)
    rules_set = sets(data)["rules"]
    assert rules_set["untimed_turns"] == 2
    assert rules_set["cache"]["cached_tokens"] == 1000
    assert rules_set["cache"]["saved_micro_usd"] == 90
    assert data["trend"] is None  # nothing timed: no day to put it in


def test_logged_cached_tokens_of_request_lines(tmp_path: Path) -> None:
    """Request lines that log the model that served them are the log's own conversations: their
    cache is what the usage's `prompt_tokens_details.cached_tokens` says (800 on small: saved
    800 * 0.09 = 72), not replay's estimate. A model the rules do not price is counted, not priced."""
    rules = write_rules(tmp_path / "rules.yaml", max_messages=50)
    bodies = turns("Tell me a story.", "More.", "Again.")
    cached = {
        "prompt_tokens": 2000,
        "completion_tokens": 100,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    log = [
        line(bodies[0], START, usage=usage(1000), model_used="small"),
        line(bodies[1], START + 60, usage=cached, model_used="small"),
        line(bodies[2], START + 120, usage=usage(3000), response={"model": "gpt-unknown"}),
    ]
    logged = sets(run(tmp_path, log, rules))["logged"]
    assert (logged["conversations"], logged["turns"], logged["switches"]) == (1, 3, 1)
    assert logged["cache"]["cached_tokens"] == 800
    assert logged["cache"]["priced_turns"] == 2
    assert logged["cache"]["saved_micro_usd"] == 72
    assert logged["cache"]["without_cache_micro_usd"] == 140 + 240
