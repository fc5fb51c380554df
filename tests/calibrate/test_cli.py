"""`tier-router calibrate` end to end, through `tier_router.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tier_router.cli import main
from tier_router.routing.loader import load_rules
from tier_router.routing.request import parse_chat

from tests.calibrate.synthetic import RULES_YAML, length_labels, write_labels, write_rules


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return write_rules(tmp_path), write_labels(tmp_path / "labels.jsonl", length_labels(3000, 500))


def tier_of(rules_path: Path, tokens: int) -> str | None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "x" * (4 * (tokens - 4))}]}
    return load_rules(rules_path).decide(parse_chat(body)).tier


def test_writes_a_rules_file_that_passes_check_and_routes_by_the_threshold(files, tmp_path, capsys):
    rules, labels = files
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.95", "--out", str(out)])

    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "held out (900 labels, never trained on; 95% intervals):" in printed
    assert "calibrated-budget: conversation_tokens: " in printed
    assert main(["check", str(out)]) == 0
    assert tier_of(out, 100) == "budget"
    assert tier_of(out, 1500) == "premium"
    text = out.read_text()
    assert "# A small rules file for calibrate's tests." in text
    assert "default_tier: premium   # anything no rule matches" in text
    assert "3000 labels: held-out quality" in text
    assert rules.read_text() == RULES_YAML  # the input is never changed


def test_a_second_run_onto_its_own_output_replaces_its_rules(files, tmp_path):
    rules, labels = files
    out = tmp_path / "calibrated.yaml"
    args = ["calibrate", str(labels), "--target", "0.95", "--out", str(out)]
    assert main([*args, "--rules", str(rules)]) == 0
    first = out.read_text()

    assert main([*args, "--rules", str(out), "--seed", "9"]) == 0

    second = out.read_text()
    assert second.count("- name: calibrated-budget") == 1
    assert [r.name for r in load_rules(out).spec.rules] == ["calibrated-budget", "tools"]
    assert second != first  # another split: another threshold and figures


def test_json_prints_one_object_with_the_held_out_figures(files, capsys):
    rules, labels = files

    assert main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.95", "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["written"] is None
    assert data["best_tier"] == "premium"
    assert data["policy"]["feature"] == "conversation_tokens"
    [threshold] = data["policy"]["thresholds"]
    assert threshold["tier"] == "budget"
    assert 560 <= threshold["max"] <= 650
    held = data["held_out"]
    assert held["examples"] == 900
    assert held["relative_quality"]["low"] <= 0.95 <= held["relative_quality"]["high"]
    assert set(held["shares"]) == {"budget", "premium"}
    assert held["cost_ratio"]["value"] < 0.85
    assert data["rules"][0]["when"] == {"conversation_tokens": {"max": threshold["max"]}}


def test_without_out_nothing_is_written(files, tmp_path, capsys):
    rules, labels = files
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["calibrate", str(labels), "--rules", str(rules), "--target", "0.95"]) == 0
    assert "not written: give --out FILE to write the rules file" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_unreachable_target_is_refused_and_nothing_is_written(files, tmp_path, capsys):
    rules, labels = files
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(labels), "--rules", str(rules), "--target", "1.2", "--out", str(out)])

    assert code == 1
    err = capsys.readouterr().err
    assert "calibrate: refused, no rules written: target 1.2 is unreachable" in err
    assert not out.exists()


def test_a_refusal_with_json_prints_the_reason_as_json(files, tmp_path, capsys):
    rules, _ = files
    few = write_labels(tmp_path / "few.jsonl", length_labels(30, 500))

    assert main(["calibrate", str(few), "--rules", str(rules), "--target", "0.9", "--json"]) == 1

    data = json.loads(capsys.readouterr().out)
    assert data["refused"].startswith("too few labels: each tier used needs at least 50 training labels")


def test_a_bad_label_line_is_named_by_file_and_line(files, tmp_path, capsys):
    rules, _ = files
    lines = [json.dumps(label) for label in length_labels(100, 500)]
    lines[2] = '{"request": {"messages": []}, "scores": {"budget": 1.5}}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "calibrated.yaml"

    code = main(["calibrate", str(bad), "--rules", str(rules), "--target", "0.95", "--out", str(out)])

    assert code == 1
    assert f"{bad}:3: scores.budget: 1.5 is outside 0..1" in capsys.readouterr().err
    assert not out.exists()


def test_a_request_that_is_not_a_chat_body_is_named_by_file_and_line(files, tmp_path, capsys):
    rules, _ = files
    lines = [json.dumps(label) for label in length_labels(100, 500)]
    lines[4] = json.dumps({"request": {"messages": [{"role": "wizard"}]}, "scores": {"budget": 1}})
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    assert main(["calibrate", str(bad), "--rules", str(rules), "--target", "0.95"]) == 1
    assert (
        f"{bad}:5: request is not a valid chat-completions body (messages.0.role: " in capsys.readouterr().err
    )


def test_a_lone_surrogate_in_a_request_is_named_by_file_and_line(files, tmp_path, capsys):
    rules, _ = files
    lines = [json.dumps(label) for label in length_labels(100, 500)]
    lines[1] = (
        '{"request": {"messages": [{"role": "user", "content": "a\\ud800b"}]}, "scores": {"budget": 1}}'
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    assert main(["calibrate", str(bad), "--rules", str(rules), "--target", "0.95"]) == 1
    assert (
        f"{bad}:2: request is not a valid chat-completions body (a lone surrogate" in capsys.readouterr().err
    )


def test_a_rules_file_that_does_not_load_is_reported(files, tmp_path, capsys):
    _, labels = files
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES_YAML.replace("tier: premium\n    when:", "tier: nowhere\n    when:"))

    assert main(["calibrate", str(labels), "--rules", str(broken), "--target", "0.95"]) == 1
    assert "nowhere" in capsys.readouterr().err
