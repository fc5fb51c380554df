"""The router's own lines: switches per logged conversation and cache savings as logged; the
per-day trend of tokens and cost per request; and a log is data — odd fields never stop it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tier_router.replay import render_html, render_text

from tests.replay_conversations.logs import START, line, run, sets, turns, write_rules

DAY = 86_400
A, B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


def router_line(
    label: str | None, model: str | None, ts: Any, prompt: int = 1000, completion: int = 100, **extra: Any
) -> str:
    record: dict[str, Any] = {
        "event": "request",
        "request_id": f"r{ts}",
        "path": "/v1/chat/completions",
        "outcome": "ok",
        "status": 200,
        "tier": "budget",
        "rule": "short-chat",
        "model": model,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_micro_usd": 140,
        **extra,
    }
    if ts is not None:
        record["ts"] = ts
    if label is not None and "conversation" not in extra:
        record["conversation"] = {"conversation": label, "stick": "kept", "remembered": model}
    return json.dumps(record)


def test_router_lines_with_the_conversation_object(tmp_path: Path) -> None:
    """A: small, small, medium, medium (1 switch); B: medium, large, medium (2). A's second turn
    logged 500 cached tokens on small: saved 500 * (0.10 - 0.01) = 45 µ$. A line without the
    conversation object, a malformed one and an unserved one are no turns."""
    rules = write_rules(tmp_path / "rules.yaml")
    log = [
        router_line(A, "small", START),
        router_line(B, "medium", START + 1),
        router_line(A, "small", START + 60, cached_tokens=500),
        router_line(B, "large", START + 61),
        router_line(A, "medium", START + 120),
        router_line(B, "medium", START + 121),
        router_line(A, "medium", START + 180),
        router_line(None, "small", START + 190),
        router_line(None, "small", START + 191, conversation="not an object"),
        router_line(None, "small", START + 192, conversation={"conversation": 7}),
        router_line(A, None, START + 200, status=503, outcome="failed"),
    ]
    data = run(tmp_path, log, rules)
    by = sets(data)
    logged = by["logged"]
    assert (logged["conversations"], logged["turns"], logged["switches"], logged["max_switches"]) == (
        2,
        7,
        3,
        2,
    )
    assert logged["most_switches"] == [
        {"conversation": B, "switches": 2, "turns": 3},
        {"conversation": A, "switches": 1, "turns": 4},
    ]
    assert logged["switches_per_multi_turn"] == 1.5
    assert logged["cache"]["cached_tokens"] == 500
    assert logged["cache"]["saved_micro_usd"] == 45
    assert by["rules"]["turns"] == 0  # nothing to re-route: router lines carry no prompt
    text = render_text(data)
    assert "as logged                  2       2        7         3      1.50     2          500" in text
    assert f"    as logged: {B} 2/3, {A} 1/4" in text


def test_trend_over_three_days(tmp_path: Path) -> None:
    """small's answers grow 100 -> 125 -> 170 tokens per request over three UTC days (cost per
    request with them: 0.10*1000 + 0.40*out); medium stays flat. Request lines with a logged
    usage count too; lines without `ts` are untimed."""
    rules = write_rules(tmp_path / "rules.yaml")
    body = turns("Hello.")[0]
    log = [
        router_line(None, "small", START, completion=100, cost_micro_usd=None),
        router_line(None, "small", START + 3600, completion=100, cost_micro_usd=None),
        router_line(None, "medium", START + 10, completion=50, cost_micro_usd=480),
        router_line(None, "small", START + DAY, completion=120, cost_micro_usd=None),
        line(
            body, START + DAY + 5, usage={"prompt_tokens": 1000, "completion_tokens": 130}, model_used="small"
        ),
        router_line(None, "small", START + 2 * DAY, completion=170, cost_micro_usd=None),
        router_line(None, "medium", START + 2 * DAY + 9, completion=50, cost_micro_usd=480),
        router_line(None, "small", None, completion=999),
    ]
    data = run(tmp_path, log, rules)
    trend = data["trend"]
    rows = [(r["day"], r["model"], r["requests"], r["completion_tokens_per_request"]) for r in trend["days"]]
    assert rows == [
        ("2026-12-01", "medium", 1, 50.0),
        ("2026-12-01", "small", 2, 100.0),
        ("2026-12-02", "small", 2, 125.0),
        ("2026-12-03", "medium", 1, 50.0),
        ("2026-12-03", "small", 1, 170.0),
    ]
    small = [r for r in trend["days"] if r["model"] == "small"]
    assert [r["cost_micro_usd_per_request"] for r in small] == [140.0, 150.0, 168.0]
    assert all(r["prompt_tokens_per_request"] == 1000.0 for r in small)
    assert trend["changes"]["small"] == {
        "from": "2026-12-01",
        "to": "2026-12-03",
        "completion_tokens_per_request": 0.7,
        "prompt_tokens_per_request": 0.0,
        "cost_per_request": 0.2,
    }
    assert trend["changes"]["medium"]["completion_tokens_per_request"] == 0.0
    assert trend["untimed"] == 1
    text = render_text(data)
    assert "2026-12-03  small                                1     1,000.0        170.0    0.000168" in text
    assert "  small 2026-12-01 -> 2026-12-03: out tok/req +70.0%, in tok/req +0.0%, $/request +20.0%" in text
    assert max(len(x) for x in text.splitlines() if not x.startswith("replay of")) <= 110
    assert "<h2>Trend per day (as logged)</h2>" in render_html(data)


def test_malformed_fields_are_tolerated(tmp_path: Path) -> None:
    """Bad `ts` values are no `ts`; an ISO 8601 `ts` is read; a bad `cached_tokens`, usage
    details, `key` or conversation object is ignored; a malformed explicit conversation id (the
    router's 400) is counted as unidentified. The replay never fails a line for any of them."""
    rules = write_rules(tmp_path / "rules.yaml")
    body = turns("Hello.")[0]
    odd_usage = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": "lots"}
    log = [
        line(body, "yesterday"),
        line(body, True),
        line(body, -5),
        line(body, "1e999"),
        line(body, [1, 2]),
        line(body, "2026-12-02T10:00:00Z", usage=odd_usage, model_used="small", cached_tokens="many", key=5),
        line(body, START, headers={"x-conversation-id": "x" * 600}),
        router_line(A, "small", {"day": 1}, cached_tokens=-3),
        router_line(A, "small", START, prompt=None, completion=None, conversation={"conversation": ""}),
        router_line(B, "small", START + 1, cached_tokens=10**9),
        '{"event": "request", "request_id": "x", "conversation": {"conversation": "c"}, "status": "200"}',
    ]
    data = run(tmp_path, log, rules)
    assert data["errors"]["count"] == 0, data["errors"]
    conversations = data["conversations"]
    assert conversations["unidentified"] == 1
    by = sets(data)
    assert by["rules"]["turns"] == 6
    assert by["rules"]["untimed_turns"] == 5
    assert by["logged"]["turns"] == 3  # the ISO-timed request line, A's and B's router lines
    assert by["logged"]["cache"]["cached_tokens"] == 1000  # B's absurd count capped at its prompt
    assert [(r["day"], r["model"]) for r in data["trend"]["days"]] == [
        ("2026-12-01", "small"),
        ("2026-12-02", "small"),
    ]
    render_text(data)
    render_html(data)


def test_a_request_line_names_its_model_by_model_used_or_a_model_in_its_body(tmp_path: Path) -> None:
    """`model_used` / `response.model` say which model served a request line; without them its
    body's `model` does when it names a model (here `small`, priced at 0.10*1000 + 0.40*100),
    never when it names a tier or `auto` (the rules chose)."""
    rules = write_rules(tmp_path / "rules.yaml")
    used = {"prompt_tokens": 1000, "completion_tokens": 100}
    log = [
        line({**turns("Hi.")[0], "model": "small"}, START, usage=used),
        line({**turns("Hello.")[0], "model": "auto"}, START + 1, usage=used),
        line({**turns("Hey.")[0], "model": "budget"}, START + 2, usage=used),
    ]
    data = run(tmp_path, log, rules)
    assert [(r["model"], r["requests"], r["cost_micro_usd_per_request"]) for r in data["trend"]["days"]] == [
        ("small", 1, 140.0)
    ]
    assert sets(data)["logged"]["turns"] == 1
