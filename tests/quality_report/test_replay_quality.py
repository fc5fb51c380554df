"""`tier-router replay` on a log that carries judgement and feedback lines (the shared line
shapes): they are never requests — the cost report is exactly the one of the same log
without them — and their quality is shown per tier, rule and arm beside the replay's cost
(text, --json, HTML). And `--against` prices a rules change: both costs and the difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tier_router.cli import main
from tier_router.replay import render_html, render_text, replay
from tier_router.routing.loader import load_rules

# µ$ per token: cheap 1/2, mid 2/4, dear 10/30.
RULES = """
version: 1
providers:
  local: {kind: mock, base_url: "mock://local"}
models:
  cheap: {provider: local, id: cheap-1, price: {input: 1.0, output: 2.0}}
  mid: {provider: local, id: mid-1, price: {input: 2.0, output: 4.0}}
  dear: {provider: local, id: dear-1, price: {input: 10.0, output: 30.0}}
tiers:
  budget: [cheap]
  standard: [mid]
  premium: [dear]
default_tier: standard
rules:
  - name: hard
    tier: premium
    when: {last_user_matches: {pattern: '\\bprove\\b', ignore_case: true}}
"""
SHORT = """  - name: short
    tier: budget
    when: {last_user_tokens: {max: 10}}
"""


def user(text: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


def judgement(verdict: str | None, **fields: Any) -> dict[str, Any]:
    line = {
        "type": "judgement",
        "request_id": "r1",
        "tier": "budget",
        "reference": "premium",
        "rule": "short",
        "model": "cheap",
        "arm": "exp/a",
        "reference_model": "dear",
        "judge_model": "dear",
        "verdict": verdict,
        "scores": {},
        "orders": [],
        "cost_micro_usd": {"reference": None, "judge": None},
        "tokens": {},
        "features": {"conversation_tokens": 5},
        "kept_prompt": False,
        "error": None,
        "skipped": None,
        "ts": 1765000000.0,
    }
    line.update(fields)
    return line


def feedback(score: Any) -> dict[str, Any]:
    return {
        "type": "feedback",
        "request_id": "r1",
        "key": "team-a",
        "tier": "budget",
        "rule": "short",
        "model": "cheap",
        "arm": "exp/a",
        "score": score,
        "label": None,
        "comment": None,
    }


REQUESTS = [
    # budget/short: 100*1 + 50*2 = 200 (standard/default without the short rule: 100*2 + 50*4 = 400)
    {**user("hi"), "usage": {"prompt_tokens": 100, "completion_tokens": 50}},
    # premium/hard: 1000*10 + 2000*30 = 70000
    {"request": user("Please prove it."), "usage": {"prompt_tokens": 1000, "completion_tokens": 2000}},
    # the router's own line, budget/short, priced as logged
    {"event": "request", "status": 200, "outcome": "ok", "tier": "budget", "rule": "short", "model": "cheap"}
    | {"cost_micro_usd": 55, "prompt_tokens": 10, "completion_tokens": 20},
]
QUALITY = [
    judgement("win", scores={"budget": 0.9, "premium": 0.7}, cost_micro_usd={"reference": 300, "judge": 40}),
    judgement("loss", scores={"budget": 0.2, "premium": 0.9}, cost_micro_usd={"reference": 310, "judge": 45}),
    judgement(None, error="judge timed out", cost_micro_usd={"reference": 300, "judge": None}),
    judgement(None, skipped="judging budget spent"),
    judgement("maybe", tier=5, scores="x", cost_micro_usd=[1]),  # a log is data: counted as failed
    feedback(1.0),
    feedback(0.4),
    feedback("great"),  # not a score: not counted
    {"type": "feedback"},
]


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + SHORT, encoding="utf-8")
    return path


def test_quality_lines_are_not_requests(tmp_path: Path, rules_path: Path) -> None:
    rules = load_rules(rules_path)
    mixed = [REQUESTS[0], *QUALITY[:5], REQUESTS[1], *QUALITY[5:], REQUESTS[2]]
    with_quality = replay(write(tmp_path / "mixed.jsonl", mixed), rules, baseline="dear", progress=False)
    plain = replay(write(tmp_path / "plain.jsonl", REQUESTS), rules, baseline="dear", progress=False)

    for part in ("totals", "by_tier", "by_model", "by_rule", "results", "cascades", "errors", "assumptions"):
        assert with_quality[part] == plain[part], part
    assert with_quality["errors"]["count"] == 0  # before: each quality line was "no chat request"
    assert with_quality["lines"] == {**plain["lines"], "total": 3 + len(QUALITY), "quality": len(QUALITY)}
    assert plain["quality"] is None


def test_quality_per_tier_rule_and_arm_beside_the_cost(tmp_path: Path, rules_path: Path) -> None:
    log = write(tmp_path / "log.jsonl", REQUESTS + QUALITY)
    data = replay(log, load_rules(rules_path), baseline="dear", progress=False)

    quality = data["quality"]
    assert (quality["judged"], quality["judge_failed"], quality["judge_skipped"]) == (2, 2, 1)
    assert (quality["judge_cost_micro_usd"], quality["judge_cost_usd"]) == (995, "0.000995")
    assert quality["feedback"] == 2
    budget = quality["tier"]["budget"]
    assert (budget["samples"], budget["wins"], budget["ties"], budget["losses"]) == (2, 1, 0, 1)
    assert budget["loss_rate_ci"] == [0.0945, 0.9055]  # Wilson, 1 of 2
    assert (budget["score"], budget["reference_score"]) == (0.55, 0.8)
    assert (budget["feedback"], budget["feedback_score"]) == (2, 0.7)
    # beside the replay's own requests and cost of that tier: "hi" (200) and the router line (55)
    assert (budget["requests"], budget["routed_micro_usd"], budget["routed_usd"]) == (2, 255, "0.000255")
    assert quality["rule"]["short"] == budget
    assert quality["arm"]["exp/a"]["samples"] == 2
    assert quality["arm"]["exp/a"]["requests"] is None  # replay's cost is not counted per arm
    assert list(quality["tier"]) == ["budget"]

    text = render_text(data)
    assert "quality   2 judged (2 failed, 1 skipped), 2 feedback; judging cost $0.000995 (logged)" in text
    lines = text.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("quality by tier")))
    assert lines[head].split()[-3:] == ["requests", "routed", "$"]
    expected = "budget 2 1/0/1 50.0% [9%-91%] 0.55 0.80 2 0.70 2 0.000255"
    assert lines[head + 1].split() == expected.split()
    assert any(line.startswith("quality by rule") for line in lines)
    assert any(line.startswith("quality by arm") for line in lines)

    page = render_html(data)
    assert "<h2>Quality (logged)</h2>" in page
    assert "<td>budget</td><td>2</td><td>1 / 0 / 1</td><td>50.0% [9.4%, 90.5%]</td>" in page
    assert "<script" not in page


def test_cli_json_and_a_log_of_quality_lines_only(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write(tmp_path / "log.jsonl", REQUESTS + QUALITY)
    assert main(["replay", str(log), "--rules", str(rules_path), "--baseline", "dear", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["quality"]["tier"]["budget"]["samples"] == 2

    only = write(tmp_path / "only.jsonl", QUALITY)
    assert main(["replay", str(only), "--rules", str(rules_path), "--baseline", "dear"]) == 0
    captured = capsys.readouterr()
    assert "quality   2 judged" in captured.out
    assert "no line of the log could be replayed" not in captured.err


def test_against_prices_the_change_between_two_rules_files(
    tmp_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the short rule "hi" goes to standard (400 µ$); with it, to budget (200 µ$). The
    premium request costs 70,000 under both; the router line and quality lines are not compared."""
    old = tmp_path / "old.yaml"
    old.write_text(RULES, encoding="utf-8")
    log = write(tmp_path / "log.jsonl", REQUESTS + QUALITY)
    base = ["replay", str(log), "--rules", str(rules_path), "--against", str(old)]

    assert main([*base, "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert (changes["compared"], changes["changed_tier"]) == (2, 1)
    assert (changes["old_routed_micro_usd"], changes["new_routed_micro_usd"]) == (70400, 70200)
    assert changes["delta_micro_usd"] == -200

    assert main(base) == 0
    text = capsys.readouterr().out
    assert "1 of 2 requests change tier" in text
    assert "cost $0.0704 -> $0.0702 (-$0.0002)" in text
    assert "  standard -> budget: 1 requests, -$0.0002" in text
