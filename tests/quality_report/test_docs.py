"""What docs/quality-loop.md ("The quality report") and docs/replay.md (quality, --against a
calibrated file) show is what the code does: each command runs, each output is the code's."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from tier_router.cli import build_parser, main
from tier_router.cli_quality import run_quality
from tier_router.quality.counts import wilson
from tier_router.quality.report import render
from tier_router.replay import render_text, replay
from tier_router.routing.loader import load_rules

from tests.quality_report.example import example_report
from tests.quality_report.test_replay_quality import QUALITY, REQUESTS, RULES, SHORT, user, write
from tests.quality_report.test_template_alarm import created
from tests.support.cfn_template import load

ROOT = Path(__file__).resolve().parents[2]


def section(doc: str, heading: str) -> str:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end > 0 else None]


def blocks(text: str, lang: str = "") -> list[str]:
    """The fenced blocks of `text` whose fence names `lang` ("": none)."""
    found: list[str] = []
    lines: list[str] | None = None
    fence = ""
    for line in text.splitlines():
        if lines is None:
            if line.startswith("```"):
                lines, fence = [], line[3:]
        elif line == "```":
            if fence == lang:
                found.append("\n".join(lines) + "\n")
            lines = None
        else:
            lines.append(line)
    return found


REPORT = section("quality-loop.md", "## The quality report")


def test_the_report_section_keeps_its_marker() -> None:
    assert "<!-- report: tier-router quality, /v1/router/status, the EMF metric and the alarm -->" in REPORT


def test_the_quality_command_and_its_output() -> None:
    command = blocks(REPORT, "sh")[0]
    words = command.split()
    assert words[0] == "tier-router"
    args = build_parser().parse_args(words[1:])
    assert (args.run, args.days, args.rules) == (run_quality, 7, Path("rules/router.yaml"))
    assert load_rules(ROOT / args.rules) is not None
    [output] = blocks(REPORT)
    assert output.rstrip("\n") == render(asyncio.run(example_report(days=args.days)))


def test_the_figures_quoted_in_the_text() -> None:
    assert "28.3% [19%-41%]" in render(asyncio.run(example_report()))  # "60 judged ... 19% to 41%"
    assert 'with 60 judged\n  answers, 28.3% means "19% to 41%"' in REPORT
    low, high = wilson(4, 20)  # type: ignore[misc]
    assert (round(low * 100), round(high * 100)) == (8, 42)
    assert "4 losses of 20 (20%) has a 95% interval of 8% to 42%" in REPORT


def test_the_alarm_command() -> None:
    [_, alarm] = blocks(REPORT, "sh")
    words = alarm.split()
    assert words[:3] == ["sam", "deploy", "--parameter-overrides"]
    given = dict(word.split("=", 1) for word in words[3:])
    data = load()
    assert set(given) <= set(data["Parameters"])
    assert "JudgedLossAlarm" in created(data, **given)
    assert data["Resources"]["JudgedLossAlarm"]["Properties"]["TreatMissingData"] == "notBreaching"


REPLAY = section("replay.md", "**Quality.**")


def test_the_replay_quality_output(tmp_path: Path) -> None:
    [output] = blocks(REPLAY.split("**Pricing a calibrated rules file.**")[0])
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES + SHORT, encoding="utf-8")
    text = render_text(
        replay(write(tmp_path / "log.jsonl", REQUESTS + QUALITY), load_rules(rules), progress=False)
    )
    for line in output.rstrip("\n").splitlines():
        assert line in text.splitlines()


def test_replay_against_a_calibrated_file_on_exported_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented command, as written, on labels with prompts: the short rule a calibration
    added moves the short request from standard to budget; a features-only label is skipped."""
    [command] = blocks(REPLAY, "sh")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "router.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "calibrated.yaml").write_text(RULES + SHORT, encoding="utf-8")
    labels = [
        {"request": user("hi"), "scores": {"budget": 1, "standard": 1, "premium": 1}},
        {"request": user("Please prove it."), "scores": {"budget": 0, "premium": 1}},
        {"request": user("x" * 200), "scores": {"budget": 0.5, "standard": 1}},
        {"features": {"conversation_tokens": 9}, "scores": {"budget": 1}},
    ]
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels), encoding="utf-8")

    assert main(command.split()[1:]) == 0
    text = capsys.readouterr().out
    changes = next(line for line in text.splitlines() if line.startswith("changes vs rules/router.yaml"))
    assert changes.startswith("changes vs rules/router.yaml: 1 of 3 requests change tier")
    old, new, delta = re.search(r"cost \$([\d.]+) -> \$([\d.]+) \((-\$[\d.]+)\)", changes).groups()  # type: ignore[union-attr]
    assert float(new) < float(old)
    assert delta == f"-${float(old) - float(new):.4f}"
    assert "  standard -> budget: 1 requests" in text
    assert "no chat request" in text  # the features-only label, skipped and listed
