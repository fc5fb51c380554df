"""Every problem at once, even after a typo'd top-level key: the file without the unknown key
is cross-checked too, so its unknown tier and model names come in the same report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tier_router.cli import main
from tier_router.routing.loader import RulesError, parse_rules


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(raw, "mem.yaml")
    return [str(p) for p in info.value.problems]


def test_a_top_level_typo_and_cross_reference_errors_are_reported_together(minimal: dict[str, Any]) -> None:
    minimal["tiers"]["cheap"] = ["small", "tiny"]  # no model 'tiny'
    minimal["rules"] = [{"name": "r", "tier": "nowhere", "when": {"has_tools": True}}]
    minimal["defualt_budget"] = 3  # typo'd top-level key
    problems = _problems(minimal)
    assert any("unknown key 'defualt_budget'" in p for p in problems)
    assert any(p.startswith("tier 'cheap'[1]") and "'tiny'" in p for p in problems)
    assert any(p.startswith("rule 'r' (#1): tier") and "'nowhere'" in p for p in problems)


def test_a_bad_regex_is_reported_with_the_typo(minimal: dict[str, Any]) -> None:
    minimal["rules"] = [{"name": "bad", "tier": "top", "when": {"any_text_matches": "(?=x)"}}]
    minimal["ruless"] = []
    problems = _problems(minimal)
    assert any("unknown key 'ruless'" in p for p in problems)
    assert any(p.startswith("rule 'bad' (#1): when") and "invalid regex" in p for p in problems)


def test_a_typo_that_hides_a_required_section_reports_only_the_schema(minimal: dict[str, Any]) -> None:
    minimal["tier"] = minimal.pop("tiers")
    problems = _problems(minimal)
    assert any("unknown key 'tier'" in p for p in problems)
    assert any("missing required key 'tiers'" in p for p in problems)


def test_check_prints_them_all(
    minimal: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    minimal["tiers"]["cheap"] = ["small", "tiny"]
    minimal["rules_"] = []
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(minimal), encoding="utf-8")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'rules_'" in err
    assert "'tiny'" in err
