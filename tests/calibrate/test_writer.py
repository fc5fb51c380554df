"""The calibrated rules file: loads, routes as calibrated, keeps the rest of the file as it was."""

from __future__ import annotations

import difflib
from pathlib import Path

from tier_router.calibrate.writer import HEADER, NewRule, with_rules
from tier_router.routing.loader import load_rules
from tier_router.routing.request import parse_chat

from tests.calibrate.synthetic import RULES_YAML

ROOT = Path(__file__).resolve().parents[2]

BUDGET = NewRule("calibrated-budget", "budget", {"conversation_tokens": {"max": 600}}, "600 labels, 2026")
KEYWORDS = NewRule(
    "calibrated-keywords",
    "premium",
    {"last_user_matches": {"pattern": r"\bprove\b", "ignore_case": True}},
    "keywords comment",
)


def route(path: Path, text: str) -> str | None:
    decision = load_rules(path).decide(
        parse_chat({"model": "auto", "messages": [{"role": "user", "content": text}]})
    )
    return decision.tier


def test_the_written_file_loads_and_routes_short_requests_cheaply(tmp_path):
    out = tmp_path / "out.yaml"
    out.write_text(with_rules(RULES_YAML, [KEYWORDS, BUDGET]), encoding="utf-8")

    rules = load_rules(out)

    assert [rule.name for rule in rules.spec.rules] == ["calibrated-keywords", "calibrated-budget", "tools"]
    assert route(out, "x" * 400) == "budget"  # 104 tokens
    assert route(out, "x" * 4000) == "premium"  # 1004 tokens: no calibrated rule, default_tier
    assert route(out, "Please PROVE it") == "premium"  # the keyword rule comes first
    assert route(out, "improve it") == "budget"  # a whole word only


def test_every_line_of_the_input_survives_in_order_with_its_comments(tmp_path):
    written = with_rules(RULES_YAML, [KEYWORDS, BUDGET])

    diff = list(difflib.ndiff(RULES_YAML.splitlines(), written.splitlines()))
    assert [line for line in diff if line.startswith("- ")] == []  # nothing removed or changed
    added = [line[2:] for line in diff if line.startswith("+ ")]
    assert added[0] == f"  # {HEADER}"
    assert "  - name: calibrated-budget  # 600 labels, 2026" in added
    assert "      conversation_tokens: {max: 600}" in added
    assert "  # Tool calls need the strong model." not in added  # still above its own rule
    assert written.index("# Tool calls need the strong model.") < written.index("- name: tools")
    assert written.index("- name: calibrated-budget") < written.index("# Tool calls")


def test_the_shipped_rules_file_only_gains_the_calibrated_lines(tmp_path):
    source = (ROOT / "rules" / "router.yaml").read_text(encoding="utf-8")
    written = with_rules(source, [BUDGET])

    diff = [line for line in difflib.ndiff(source.splitlines(), written.splitlines()) if line[:2] in "- + "]
    assert [line for line in diff if line.startswith("- ")] == []
    assert len([line for line in diff if line.startswith("+ ")]) == 5  # header + the 4 lines of the rule
    out = tmp_path / "router.yaml"
    out.write_text(written, encoding="utf-8")
    assert load_rules(out).spec.rules[0].name == "calibrated-budget"


def test_a_rerun_replaces_the_calibrated_rules_instead_of_adding_them_twice():
    once = with_rules(RULES_YAML, [KEYWORDS, BUDGET])
    newer = NewRule("calibrated-budget", "budget", {"conversation_tokens": {"max": 700}}, "newer labels")

    twice = with_rules(once, [newer])

    assert twice.count("calibrated-") == 1 + twice.count(HEADER)  # the header names the prefix once
    assert twice.count(HEADER) == 1
    assert "calibrated-keywords" not in twice
    assert "max: 600" not in twice
    assert "  - name: calibrated-budget  # newer labels" in twice
    assert with_rules(twice, [newer]) == twice  # a third run with the same result changes nothing
    assert twice.replace("  - name: calibrated-budget  # newer labels\n", "").replace("700", "600") == (
        with_rules(RULES_YAML, [BUDGET]).replace("  - name: calibrated-budget  # 600 labels, 2026\n", "")
    )


def test_a_comment_above_a_replaced_calibrated_rule_is_kept_above_the_next_rule():
    once = with_rules(RULES_YAML, [BUDGET])
    edited = once.replace("  - name: calibrated-budget", "  # reviewed by ops\n  - name: calibrated-budget")

    again = with_rules(edited, [BUDGET])

    assert again.count("# reviewed by ops") == 1
    assert (
        again.index("- name: calibrated-budget")
        < again.index("# reviewed by ops")
        < again.index("- name: tools")
    )


def test_a_file_without_rules_gets_a_rules_list():
    source = RULES_YAML[: RULES_YAML.index("rules:")]
    written = with_rules(source, [BUDGET])
    assert written.startswith(source)
    assert "rules:\n  # " + HEADER + "\n  - name: calibrated-budget" in written
