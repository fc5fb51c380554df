"""docs/quality-loop.md, "Calibrate": the run it shows is what the command prints and writes."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import pytest
from tier_router.cli import main
from tier_router.routing.loader import load_rules

from tests.calibrate.synthetic import RULES_YAML, keyword_labels, write_labels, write_rules

ROOT = Path(__file__).resolve().parents[2]
SHOWN_DATE = "2026-12-07"


def section(title: str) -> str:
    page = (ROOT / "docs" / "quality-loop.md").read_text(encoding="utf-8")
    return page.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def block(text: str, kind: str) -> str:
    return text.split(f"```{kind}\n", 1)[1].split("```", 1)[0]


def test_the_docs_run_is_what_the_command_prints_and_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = section("Calibrate")
    command, *printed = block(text, "console").splitlines()
    monkeypatch.chdir(tmp_path)
    write_rules(tmp_path)  # router.yaml
    write_labels(tmp_path / "labels.jsonl", keyword_labels(3000, 1000, "prove", 0.15))

    assert command.startswith("$ tier-router calibrate ")
    assert main(shlex.split(command)[2:]) == 0

    assert capsys.readouterr().out.splitlines() == printed
    written = (tmp_path / "calibrated.yaml").read_text(encoding="utf-8")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    shown = block(text, "yaml").replace(SHOWN_DATE, today)
    assert written == RULES_YAML[: RULES_YAML.index("rules:")] + shown
    assert main(["check", "calibrated.yaml"]) == 0
    assert [r.name for r in load_rules(tmp_path / "calibrated.yaml").spec.rules][:2] == [
        "calibrated-keywords",
        "calibrated-budget",
    ]


def test_the_refusal_minimums_the_docs_state_are_the_code_s() -> None:
    from tier_router.calibrate.costs import OUTPUT_TOKENS
    from tier_router.calibrate.policy import KEYWORD_GAIN, KEYWORD_ROUNDS
    from tier_router.calibrate.run import HOLDOUT_TOLERANCE, MIN_HOLDOUT, MIN_TIER_LABELS

    text = " ".join(section("Calibrate").split())
    assert f"fewer than **{MIN_TIER_LABELS} training labels**" in text
    assert f"fewer than {MIN_HOLDOUT} held-out labels" in text
    assert f"output estimate of {OUTPUT_TOKENS} tokens" in text
    assert f"more than {HOLDOUT_TOLERANCE * 100:.0f} point below the target" in text
    assert f"at most {KEYWORD_ROUNDS})" in text
    assert f"by at least {KEYWORD_GAIN:.0%}" in text
