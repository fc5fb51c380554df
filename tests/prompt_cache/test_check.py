"""`tier-router check` on the `prompt_cache:` section: bad values name the file, the place and
the reason; good ones load (fully and compiled) and give each tier and rule its setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.cli import main
from tier_router.routing.compiled import compile_file, load_rules_fast
from tier_router.routing.loader import load_rules
from tier_router.routing.request import parse_chat

from tests.support.rules import three_providers


def write(tmp_path: Path, **prompt_cache: Any) -> Path:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(three_providers(prompt_cache=prompt_cache)))
    return path


@pytest.mark.parametrize(
    ("section", "place", "reason"),
    [
        ({"auto": "yes please"}, "prompt_cache.auto", "valid boolean"),
        ({"auto": True, "min_tokens": 0}, "prompt_cache.min_tokens", "greater than or equal to 1"),
        ({"auto": True, "min_tokens": 1.5}, "prompt_cache.min_tokens", "integer"),
        ({"breakpoints": 4}, "prompt_cache.breakpoints", "unknown key 'breakpoints'"),
        (
            {"rules": {"needs-thinking": {"min_tokens": -3}}},
            "prompt_cache.rules.needs-thinking.min_tokens",
            "greater than or equal to 1 (got -3)",
        ),
        ({"rules": {"needs-thinkin": {"auto": True}}}, "prompt_cache.rules", "unknown rule 'needs-thinkin'"),
        ({"tiers": {"gold": {"auto": False}}}, "prompt_cache.tiers", "unknown tier 'gold'"),
    ],
)
def test_bad_values_are_refused_naming_file_place_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], section: dict[str, Any], place: str, reason: str
) -> None:
    path = write(tmp_path, **section)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    lines = [line for line in text.splitlines() if place in line]
    assert lines, text
    assert str(path) in lines[0]
    assert reason in lines[0], text


def test_each_tier_and_rule_gets_its_setting_fully_and_compiled(tmp_path: Path) -> None:
    path = write(tmp_path, auto=True, min_tokens=2048, tiers={"fast": {"auto": False}},
                 rules={"needs-thinking": {"min_tokens": 4096}})  # fmt: skip
    compile_file(path)
    for spec in (load_rules(path).spec, load_rules_fast(path).spec):
        assert spec.prompt_cache.min_tokens_for("claude-only", None) == 2048
        assert spec.prompt_cache.min_tokens_for("fast", None) is None
        assert spec.prompt_cache.min_tokens_for("smart", "needs-thinking") == 4096
        # field by field: the rule gives min_tokens only, so the tier's `auto: false` still holds
        assert spec.prompt_cache.min_tokens_for("fast", "needs-thinking") is None


def test_off_by_default(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(three_providers()))
    spec = load_rules(path).spec
    assert all(spec.prompt_cache.min_tokens_for(t, None) is None for t in spec.tiers)


def test_used_only_when_something_turns_it_on(tmp_path: Path) -> None:
    assert not load_rules(
        write(tmp_path, min_tokens=2048, tiers={"fast": {"min_tokens": 9}})
    ).spec.prompt_cache.used
    assert load_rules(write(tmp_path, rules={"needs-thinking": {"auto": True}})).spec.prompt_cache.used
    engine = load_rules(write(tmp_path, auto=False))
    assert engine.prompt_cache is None  # off: the engine asks nothing per request


def test_a_decision_moved_to_another_tier_takes_that_tiers_setting(tmp_path: Path) -> None:
    engine = load_rules(
        write(tmp_path, auto=True, tiers={"fast": {"auto": False}, "smart": {"min_tokens": 3000}})
    )
    decision = engine.decide(
        parse_chat({"model": "claude-only", "messages": [{"role": "user", "content": "hi"}]})
    )
    assert decision.prompt_cache == 1024
    assert engine.retier(decision, "fast", "pacing").prompt_cache is None
    assert engine.retier(decision, "smart", "pacing").prompt_cache == 3000
