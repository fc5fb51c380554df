"""`tier-router replay`: exact totals on a hand-computed log, --against diffs, router log lines,
malformed lines, the JSON schema, the HTML report and the CLI's exit codes."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tier_router.cli import main
from tier_router.replay import Progress, Rate, Replayer, render_text, replay, report
from tier_router.routing.engine import Rules
from tier_router.routing.loader import load_rules
from tier_router.schema import Price
from tier_router.spend.pricing import cost_micro_usd

ROOT = Path(__file__).resolve().parents[2]


def user(text: str, model: str = "auto", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


PROOF = "Please prove that there are infinitely many primes, carefully."
# Hand-computed (prices are µ$ per token: cheap 1/2, mid 2/4, dear 10/30; baseline = dear):
LOG_LINES = [
    # 1 short -> budget/cheap: 100*1 + 50*2 = 200; baseline 100*10 + 50*30 = 2500
    json.dumps({**user("hi"), "usage": {"prompt_tokens": 100, "completion_tokens": 50}}),
    # 2 "prove" -> premium/dear: 1000*10 + 2000*30 = 70000 (baseline too); logged: dear, 70000
    json.dumps(
        {
            "custom_id": "c2",
            "request": user(PROOF),
            "response": {"model": "dear", "usage": {"prompt_tokens": 1000, "completion_tokens": 2000}},
        }
    ),
    # 3 no usage, 80 chars (20 tokens > 10) -> default standard/mid. Estimated: prompt = 20 + 4
    #   (message overhead) = 24, completion = min(max_tokens 100, 300) = 100.
    #   mid 24*2 + 100*4 = 448; baseline 24*10 + 100*30 = 3240
    json.dumps(user("x" * 80, max_tokens=100)),
    # 4 router log line: priced as logged (55, not the 50 its tokens cost now); baseline 10*10 + 20*30 = 700
    json.dumps(
        {
            "event": "request",
            "outcome": "ok",
            "status": 200,
            "tier": "budget",
            "rule": "short",
            "model": "cheap",
            "cost_micro_usd": 55,
            "prompt_tokens": 10,
            "completion_tokens": 20,
            "features": {"conversation_tokens": 9},
        }
    ),
    # 5 router log line of a failed request: counted, not priced
    json.dumps({"event": "request", "outcome": "failed", "status": 502, "model": None, "tier": "budget"}),
    # 6, 7, 8 malformed: not JSON, not an object, an invalid request
    "{not json",
    "[1, 2]",
    json.dumps({"model": "auto", "messages": []}),
    # 9 blank
    "",
    # 10 a model these rules do not know -> routed as auto -> short -> budget: 7*1 + 3*2 = 13; baseline 160
    json.dumps(
        {**user("hello there", model="gpt-4o-2024"), "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
    ),
]
LOG = "\n".join(LOG_LINES) + "\n"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text(LOG, encoding="utf-8")
    return path


def test_exact_totals_on_a_hand_computed_log(log_path: Path, rules: Rules) -> None:
    data = replay(log_path, rules, baseline="dear", progress=False)
    t = data["totals"]
    assert t["requests"] == 5
    assert t["routed_micro_usd"] == 200 + 70000 + 448 + 55 + 13 == 70716
    assert t["baseline_micro_usd"] == 2500 + 70000 + 3240 + 700 + 160 == 76600
    assert t["saved_micro_usd"] == 5884
    assert t["savings_ratio"] == round(5884 / 76600, 6)
    assert (t["routed_usd"], t["baseline_usd"], t["saved_usd"]) == ("0.070716", "0.076600", "0.005884")
    assert t["prompt_tokens"] == 100 + 1000 + 24 + 10 + 7
    assert t["completion_tokens"] == 50 + 2000 + 100 + 20 + 3
    assert (t["logged_requests"], t["logged_micro_usd"]) == (2, 70000 + 55)

    by_tier = data["by_tier"]
    assert list(by_tier) == ["premium", "standard", "budget"]  # by routed cost, dearest first
    assert by_tier["budget"]["requests"] == 3
    assert by_tier["budget"]["routed_micro_usd"] == 200 + 55 + 13
    assert by_tier["budget"]["baseline_micro_usd"] == 2500 + 700 + 160
    assert by_tier["budget"]["share"] == 0.6
    assert by_tier["standard"]["routed_micro_usd"] == 448
    assert by_tier["premium"]["routed_micro_usd"] == 70000
    assert {k: v["requests"] for k, v in data["by_model"].items()} == {"dear": 1, "mid": 1, "cheap": 3}
    assert {k: v["requests"] for k, v in data["by_rule"].items()} == {"hard": 1, "default": 1, "short": 3}

    assert data["lines"] == {
        "total": 10,
        "blank": 1,
        "rerouted": 4,
        "router_log": 2,
        "router_log_unserved": 1,
        "skipped": 3,
        "quality": 0,
    }
    assert data["assumptions"]["usage_estimated"] == 1
    assert data["assumptions"]["requested_model_unknown_routed_as_auto"] == 1


def test_malformed_lines_are_reported_with_line_numbers(log_path: Path, rules: Rules) -> None:
    data = replay(log_path, rules, baseline="dear", progress=False)
    errors = data["errors"]
    assert errors["count"] == 3
    assert [e["line"] for e in errors["first"]] == [6, 7, 8]
    assert errors["first"][0]["reason"].startswith("invalid JSON")
    assert errors["first"][1]["reason"] == "not a JSON object: list"
    assert errors["first"][2]["reason"].startswith("invalid request: messages")
    assert errors["by_kind"] == {"invalid JSON": 1, "invalid request": 1, "not a JSON object": 1}
    text = render_text(data)
    assert "line 6: invalid JSON" in text
    assert "line 8: invalid request" in text


def test_hostile_lines_never_crash(tmp_path: Path, rules: Rules) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [
        b"\xff\xfe not utf-8",
        b'"just a string"',
        b"null",
        b'{"request": "not a dict"}',
        b'{"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}',
        b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "auto", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}',  # encoded
        b'{"event": "request", "model": "not-in-rules", "prompt_tokens": 5, "completion_tokens": 5}',
        b'{"model": 5, "messages": [{"role": "user", "content": "hi"}], "usage": {"prompt_tokens": "x"}}',
        b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "headers": [1]}',
        b"{" * 100_000,
    ]
    path.write_bytes(b"\n".join(lines))
    data = replay(path, rules, baseline="dear", progress=False)
    assert data["lines"]["total"] == len(lines)
    # the last three that are valid requests: model 5 -> auto; usage unusable -> estimated; headers ignored
    assert data["totals"]["requests"] == 2
    assert data["errors"]["count"] == len(lines) - 2
    assert [e["line"] for e in data["errors"]["first"]] == [1, 2, 3, 4, 5, 6, 7, 8, 11]
    assert "unexpected error" not in data["errors"]["by_kind"]  # each one is named for what it is
    reasons = {e["line"]: e["reason"] for e in data["errors"]["first"]}
    assert reasons[6].startswith("invalid request")
    assert "surrogate" in reasons[6]
    assert reasons[7].startswith("invalid request")
    assert "surrogate" in reasons[7]


def test_against_reports_exactly_the_requests_that_move(
    tmp_path: Path, write_rules: Callable[..., Path]
) -> None:
    """short: last_user_tokens <= 10 (old) vs <= 20 (new): requests of 11..20 tokens move
    standard -> budget. Seven of them, at known lines, among 40 requests."""
    old = load_rules(write_rules("old.yaml", short_max=10))
    new = load_rules(write_rules("new.yaml", short_max=20))
    rng = random.Random(3)
    moving = set(rng.sample(range(1, 41), 7))
    lines = []
    for line in range(1, 41):
        if line in moving:
            chars = rng.randint(41, 80)  # 11..20 tokens
        else:
            chars = rng.choice([rng.randint(1, 40), rng.randint(81, 400)])  # <= 10 or > 20 tokens
        record = {"custom_id": f"r{line}", "request": user("y" * chars)}
        lines.append(json.dumps(record))
    lines.insert(5, json.dumps({"event": "request", "model": "cheap", "tier": "budget", "cost_micro_usd": 1}))
    moving = {n + 1 if n > 5 else n for n in moving}  # the router line (line 6) shifted the rest
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    data = replay(path, new, against=old, baseline="dear", progress=False, against_path="old.yaml")
    changes = data["changes"]
    assert changes["compared"] == 40  # the router line is not re-routable
    assert changes["changed_tier"] == 7
    assert {m["line"] for m in changes["requests"]} == moving
    assert all(m["id"] == f"r{m['line'] - (m['line'] > 6)}" for m in changes["requests"])
    assert all((m["from_tier"], m["to_tier"]) == ("standard", "budget") for m in changes["requests"])
    assert all((m["from_rule"], m["to_rule"]) == ("default", "short") for m in changes["requests"])
    [transition] = changes["transitions"]
    assert (transition["from"], transition["to"], transition["requests"]) == ("standard", "budget", 7)
    assert transition["delta_micro_usd"] < 0  # budget is cheaper
    assert changes["delta_micro_usd"] == transition["delta_micro_usd"]
    assert data["against"] == "old.yaml"
    text = render_text(data)
    assert "7 of 40 requests change tier" in text
    assert "standard -> budget: 7 requests" in text
    assert text.count("standard/default -> budget/short") == 7

    limited = replay(path, new, against=old, baseline="dear", progress=False, list_limit=3)
    assert limited["changes"]["changed_tier"] == 7
    assert limited["changes"]["requests_listed"] == 3
    assert "... and 4 more" in render_text(limited)


def test_against_the_same_rules_changes_nothing(log_path: Path, rules: Rules) -> None:
    data = replay(log_path, rules, against=rules, baseline="dear", progress=False)
    assert data["changes"]["changed_tier"] == 0
    assert data["changes"]["compared"] == 4
    assert data["changes"]["delta_micro_usd"] == 0


def test_default_baseline_is_the_dearest_model_and_model_override(log_path: Path, rules: Rules) -> None:
    data = replay(log_path, rules, progress=False)
    assert data["baseline_model"] == "dear"
    forced = replay(log_path, rules, model="premium", baseline="dear", progress=False)
    assert {k: v["requests"] for k, v in forced["by_tier"].items()} == {
        "premium": 4,
        "budget": 1,
    }  # budget: router line
    assert forced["totals"]["routed_micro_usd"] == forced["totals"]["baseline_micro_usd"] - 700 + 55
    assert forced["assumptions"]["requested_model_unknown_routed_as_auto"] == 0


def test_fast_integer_pricing_matches_cost_micro_usd() -> None:
    rng = random.Random(8)
    prices = [0.028, 0.1, 0.28, 0.42, 1.25, 3.0, 15.0, 0.075, 0.0375, 1e-10, 1e-13]
    for _ in range(2000):
        price = Price(input=rng.choice(prices), output=rng.choice(prices))
        prompt, completion = rng.randint(0, 200_000), rng.randint(0, 70_000)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        assert Rate.of(price).cost(prompt, completion, None) == cost_micro_usd(price, usage)
    assert Rate.of(Price(input=1e-10, output=1.0)).rates is not None  # 10 decimals: integer math
    assert Rate.of(Price(input=1e-13, output=1.0)).rates is None  # > 12 decimals: exact Decimal path


def test_cached_usage_is_priced_like_the_router(rules: Rules) -> None:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 800},
    }
    line = json.dumps({**user("hi"), "usage": usage})
    replayer = Replayer(rules, baseline="dear")
    audit = replayer.run(io.BytesIO(line.encode()))
    data = report(audit, log="-", rules="r", against=None, baseline="dear")
    assert data["totals"]["routed_micro_usd"] == cost_micro_usd(rules.routes["cheap"].price, usage)


def test_progress_only_when_asked_or_on_a_terminal(tmp_path: Path, rules: Rules) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text((json.dumps(user("hi")) + "\n") * 6000, encoding="utf-8")
    quiet = io.StringIO()
    replay(path, rules, progress_stream=quiet)  # not a terminal, not forced
    assert quiet.getvalue() == ""
    loud = io.StringIO()
    replay(path, rules, progress=True, progress_stream=loud)
    assert "replay: 6,000 lines" in loud.getvalue()
    assert "(100%)" in loud.getvalue()
    small = io.StringIO()
    progress = Progress(small, None)
    progress.update(4000, 100)  # below PROGRESS_MIN_LINES: nothing
    assert small.getvalue() == ""


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_json_schema(log_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(log_path), "--rules", str(rules_path), "--baseline", "dear", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "tier-router.replay/1"
    assert set(data) >= {
        "log",
        "rules",
        "against",
        "baseline_model",
        "lines",
        "assumptions",
        "totals",
        "by_tier",
        "by_model",
        "by_rule",
        "changes",
        "errors",
        "timing",
    }
    assert data["changes"] is None
    row_keys = {
        "requests",
        "share",
        "prompt_tokens",
        "completion_tokens",
        "routed_micro_usd",
        "routed_usd",
        "cost_share",
        "baseline_micro_usd",
        "baseline_usd",
    }
    for table in ("by_tier", "by_model", "by_rule"):
        assert all(set(row) == row_keys for row in data[table].values())
    assert data["totals"]["routed_micro_usd"] == 70716


def test_cli_text_and_html(
    log_path: Path, rules_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code = main(
        ["replay", str(log_path), "--rules", str(rules_path), "--baseline", "dear", "--html", str(out)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "routed    $0.070716" in text
    assert "baseline  $0.076600" in text
    assert "saved     $0.005884 (7.7% of the baseline)" in text
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 2
    assert "<script" not in page
    assert "$0.070716" in page
    assert "$0.076600" in page
    assert "line 6: invalid JSON" in page


def test_cli_against(
    tmp_path: Path, write_rules: Callable[..., Path], log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = write_rules("old.yaml", drop_short=True), write_rules("new.yaml")
    code = main(["replay", str(log_path), "--rules", str(new), "--against", str(old), "--json"])
    assert code == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert changes["changed_tier"] == 2
    assert [m["line"] for m in changes["requests"]] == [1, 10]


def test_cli_exit_codes(
    tmp_path: Path, log_path: Path, rules_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["replay", str(log_path), "--rules", str(rules_path)]
    assert main([*base, "--baseline", "nope"]) == 1
    assert "unknown baseline model 'nope'" in capsys.readouterr().err
    assert main([*base, "--model", "nope"]) == 1
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--rules", str(rules_path)]) == 1
    assert "cannot read" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\n", encoding="utf-8")
    assert main([*base, "--against", str(broken)]) == 1
    assert main(["replay", str(log_path), "--rules", str(broken)]) == 1
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("nope\n{]\n", encoding="utf-8")
    assert main(["replay", str(garbage), "--rules", str(rules_path)]) == 1
    assert "no line of the log could be replayed" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(["replay", str(empty), "--rules", str(rules_path)]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["replay"])
    assert exc.value.code == 2


def test_shipped_sample_log_replays_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    sample = ROOT / "rules" / "samples" / "requests.jsonl"
    code = main(
        ["replay", str(sample), "--rules", str(ROOT / "rules" / "router.yaml"), "--model", "auto", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["lines"]["total"] == 2000
    assert data["errors"]["count"] == 0
    assert data["totals"]["requests"] == 2000
    assert set(data["by_tier"]) == {"budget", "standard", "premium"}
    assert sample.stat().st_size < 2_000_000


def test_logged_cost_fields(rules: Rules) -> None:
    lines = [
        json.dumps({**user("hi"), "cost_usd": 0.0012}),
        json.dumps({**user("hi"), "cost_micro_usd": 7}),
        '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "cost_usd": NaN}',
        json.dumps({**user("hi"), "cost_usd": -1}),
    ]
    audit = Replayer(rules, baseline="dear").run(io.BytesIO("\n".join(lines).encode()))
    assert audit.errors == 0
    assert audit.rerouted == 4
    assert (audit.logged_requests, audit.logged_micro) == (2, 1200 + 7)


def test_forced_progress_shows_the_final_count_of_a_short_log(tmp_path: Path, rules: Rules) -> None:
    """`replay --progress` on a log under PROGRESS_MIN_LINES: no running updates, but the final
    count (it printed nothing at all before)."""
    path = tmp_path / "short.jsonl"
    path.write_text((json.dumps(user("hi")) + "\n") * 12, encoding="utf-8")
    err = io.StringIO()
    replay(path, rules, progress=True, progress_stream=err)
    assert err.getvalue().startswith("\rreplay: 12 lines, ")
    assert "(100%)" in err.getvalue()
    assert err.getvalue().endswith("\n")
    assert err.getvalue().count("\r") == 1
