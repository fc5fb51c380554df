"""Loading rules files: the shipped file loads; every broken file fails with a precise error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router import cli
from tier_router.routing.engine import Rules
from tier_router.routing.loader import Problem, RulesError, load_rules, parse_rules

# --- the shipped file -----------------------------------------------------------------------


def test_shipped_rules_load(shipped_rules_path: Path) -> None:
    rules = load_rules(shipped_rules_path)
    assert isinstance(rules, Rules)
    assert set(rules.tiers) == {"budget", "standard", "premium"}
    assert rules.default_tier == "standard"
    assert [r.name for r in rules.rules] == [
        "caller-asks-premium",
        "background-batch",
        "images",
        "long-context",
        "hard-reasoning",
        "code",
        "tools-and-json",
        "simple-transforms",
        "short-chat",
    ]
    assert [m.name for m in rules.tiers["budget"]] == [
        "deepseek-chat",
        "gemini-2.5-flash-lite",
        "gpt-4.1-nano",
    ]
    # every name a client may send resolves: auto, tiers, models, aliases
    assert {"auto", "budget", "gpt-4o", "gpt-4o-mini", "claude-sonnet-4.5"} <= set(rules.valid_names)


def test_check_passes_on_shipped_rules(shipped_rules_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(shipped_rules_path)]) == 0
    out, err = capsys.readouterr()
    assert f"{shipped_rules_path}: valid (4 providers, 9 models, 3 tiers, 9 rules)" in out
    assert "FAIL" not in out
    assert " 0 failed" in out
    assert err == ""


# --- the broken-file corpus -----------------------------------------------------------------


BROKEN = Path(__file__).resolve().parent / "broken"
CASES: dict[str, dict[str, Any]] = yaml.safe_load((BROKEN / "cases.yaml").read_text(encoding="utf-8"))
"""broken/NAME.yaml → {problems: N, expect: [pieces]}; see broken/cases.yaml."""


def test_every_broken_file_has_a_case(broken_dir: Path) -> None:
    files = {p.name for p in broken_dir.glob("*.yaml")} - {"cases.yaml"}
    assert files == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file_fails_with_precise_error(name: str, broken_dir: Path) -> None:
    case = CASES[name]
    path = broken_dir / name
    with pytest.raises(RulesError) as info:
        load_rules(path)
    error = info.value
    text = str(error)
    count = case["problems"]
    assert error.path == str(path)
    assert len(error.problems) == count
    head, *lines = text.splitlines()
    assert head == f"invalid rules file {path} ({count} problem{'s' if count != 1 else ''})"
    assert len(lines) == count
    assert all(line.startswith(f"{path}: ") for line in lines), "every problem names the file"
    for piece in case["expect"]:
        assert any(line.startswith(f"{path}: {piece}") for line in lines), f"missing {piece!r} in:\n{text}"
    for piece in case.get("contains", []):
        assert any(piece in line for line in lines), f"missing {piece!r} in:\n{text}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_file_fails_check_with_the_same_error(
    name: str, broken_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broken_dir / name
    assert cli.main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "valid (" not in out
    for piece in CASES[name]["expect"]:
        assert f"{path}: {piece}" in err
    for piece in CASES[name].get("contains", []):
        assert piece in err


def test_problem_objects_carry_where_and_reason(broken_dir: Path) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(broken_dir / "unknown_tier_in_rule.yaml")
    assert info.value.problems == [
        Problem(
            "rule 'route-code' (#1): tier",
            "unknown tier 'premum' (known: budget, premium); did you mean 'premium'?",
        )
    ]


# --- more problems, built from the minimal dict ---------------------------------------------


def _error(raw: Any) -> RulesError:
    with pytest.raises(RulesError) as info:
        parse_rules(raw, "mem.yaml")
    return info.value


def _rule(when: dict[str, Any], name: str = "r", **extra: Any) -> dict[str, Any]:
    return {"name": name, "tier": "top", "when": when, **extra}


def test_half_valid_file_never_yields_rules(minimal: dict[str, Any]) -> None:
    """Eight good rules and one bad regex at the end: nothing is returned, not even the good part."""
    good = [_rule({"last_user_matches": f"word{i}"}, name=f"ok-{i}") for i in range(8)]
    minimal["rules"] = [*good, _rule({"any_text_matches": "(?=x)"}, name="bad")]
    (problem,) = _error(minimal).problems
    assert problem.where.startswith("rule 'bad' (#9): when")
    assert problem.reason == "invalid regex '(?=x)': invalid perl operator: (?="


def test_bad_regexes_in_several_rules_are_all_reported(minimal: dict[str, Any]) -> None:
    minimal["rules"] = [
        _rule({"last_user_matches": "(a)\\1"}, name="one"),
        _rule({"has_tools": True}, name="fine"),
        _rule({"system_matches": {"pattern": "(?!x)", "ignore_case": True}}, name="two"),
    ]
    error = _error(minimal)
    assert len(error.problems) == 2
    assert error.problems[0].where.startswith("rule 'one' (#1): when")
    assert error.problems[1].where.startswith("rule 'two' (#3): when")
    assert "invalid escape sequence: \\1" in error.problems[0].reason
    assert "invalid perl operator: (?!" in error.problems[1].reason


def test_model_listed_twice_in_a_tier(minimal: dict[str, Any]) -> None:
    minimal["tiers"]["cheap"] = ["small", "medium", "small"]
    assert [str(p) for p in _error(minimal).problems] == ["tier 'cheap'[2]: model 'small' is listed twice"]


def test_auto_is_reserved(minimal: dict[str, Any]) -> None:
    minimal["tiers"]["auto"] = ["small"]
    reasons = [str(p) for p in _error(minimal).problems]
    assert "'auto': is reserved for rule-based routing; rename the tier or model" in reasons


def test_alias_cannot_shadow_a_model(minimal: dict[str, Any]) -> None:
    minimal["aliases"] = {"small": "top"}
    assert [str(p) for p in _error(minimal).problems] == [
        "aliases.small: an alias cannot reuse the name of a tier, a model or 'auto'"
    ]


def test_rule_priority_must_be_known(minimal: dict[str, Any]) -> None:
    minimal["rules"] = [_rule({"has_tools": True}, name="r", priority="urgent")]
    (problem,) = _error(minimal).problems
    assert problem.where == "rule 'r' (#1): priority"
    assert "'low', 'normal' or 'high'" in problem.reason
    assert "(got 'urgent')" in problem.reason


def test_missing_required_sections(minimal: dict[str, Any]) -> None:
    del minimal["tiers"]
    del minimal["default_tier"]
    assert {str(p) for p in _error(minimal).problems} == {
        "tiers: missing required key 'tiers'",
        "default_tier: missing required key 'default_tier'",
    }


def test_provider_url_scheme(minimal: dict[str, Any]) -> None:
    minimal["providers"]["openai"]["base_url"] = "api.openai.com/v1"
    (problem,) = _error(minimal).problems
    assert problem.where == "provider 'openai': base_url"
    assert "must start with http://, https://" in problem.reason


def test_unknown_key_in_nested_condition_is_located(minimal: dict[str, Any]) -> None:
    minimal["rules"] = [_rule({"any": [{"has_tools": True}, {"not": {"has_image": True}}]}, name="nest")]
    assert [str(p) for p in _error(minimal).problems] == [
        "rule 'nest' (#1): when.any[1].not.has_image: unknown key 'has_image' (did you mean 'has_images'?)"
    ]


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(RulesError) as info:
        load_rules(missing)
    assert str(info.value).splitlines()[1] == f"{missing}: cannot read: No such file or directory"

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"version: 1\n# caf\xe9\n")
    with pytest.raises(RulesError) as info:
        load_rules(latin1)
    assert "not UTF-8 text: invalid continuation byte at byte 16" in str(info.value)


def test_duplicate_key_inside_a_rule_is_caught(tmp_path: Path, shipped_rules_path: Path) -> None:
    text = shipped_rules_path.read_text(encoding="utf-8")
    text = text.replace(
        "    tier: premium\n    when:\n      header:",
        "    tier: premium\n    tier: budget\n    when:\n      header:",
        1,
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    line = text.splitlines().index("    tier: budget") + 1
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert f"{path}: line {line}, column 5: invalid YAML: duplicate key 'tier' (line {line})" in str(
        info.value
    )


def test_parse_rules_does_not_mutate_its_input(minimal: dict[str, Any]) -> None:
    minimal["rules"] = [_rule({"last_user_matches": "x", "has_tools": True})]
    before = copy.deepcopy(minimal)
    parse_rules(minimal, "mem.yaml")
    assert minimal == before


# --- bugs: these fail against the current loader (see the report) ----------------------------


@pytest.mark.parametrize(
    "when",
    [
        {"last_user_chars": None},
        {"last_user_matches": None},
        {"all": None},
        {"not": None},
        {"header": None},
        {"has_tools": None},
    ],
    ids=["range", "regex", "all", "not", "header", "flag"],
)
def test_null_condition_value_is_a_rules_error(minimal: dict[str, Any], when: dict[str, Any]) -> None:
    """`has_tools:` with nothing after it is YAML null: it must be reported, not crash the loader
    (AttributeError / TypeError) or, for flags, load as a condition that can never hold."""
    minimal["rules"] = [_rule(when, name="nulls")]
    (problem,) = _error(minimal).problems
    key = next(iter(when))
    assert problem.where.startswith(f"rule 'nulls' (#1): when.{key}")


def test_bad_regex_error_names_the_condition_field(minimal: dict[str, Any]) -> None:
    """The loader promises file, rule, *field* and reason; regex errors stop at `when`."""
    minimal["rules"] = [
        _rule({"any": [{"has_tools": True}, {"last_user_matches": "(a)\\1"}]}, name="br"),
        _rule({"header": {"name": "x-task", "matches": "(?=x)"}}, name="hr"),
    ]
    wheres = [p.where for p in _error(minimal).problems]
    assert wheres == ["rule 'br' (#1): when.any[1].last_user_matches", "rule 'hr' (#2): when.header.matches"]


def test_ignore_case_cannot_make_an_invalid_pattern_valid(minimal: dict[str, Any]) -> None:
    """`a)|(b` is not a regex; wrapped as `(?i:a)|(b)` it compiles and means something else."""
    minimal["rules"] = [_rule({"last_user_matches": {"pattern": "a)|(b", "ignore_case": True}}, name="ic")]
    (problem,) = _error(minimal).problems
    assert problem.where.startswith("rule 'ic' (#1): when")
    assert "invalid regex 'a)|(b'" in problem.reason


def test_unhashable_yaml_key_is_a_rules_error(tmp_path: Path) -> None:
    """A complex YAML key (`? [a, b]`) crashed the duplicate-key check with TypeError."""
    path = tmp_path / "complex-key.yaml"
    path.write_text("providers: {}\n? [a, b]\n: 1\n", encoding="utf-8")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert "line 2" in str(info.value)


def test_reference_and_regex_problems_are_reported_together(minimal: dict[str, Any]) -> None:
    """The loader reports every problem at once: an unknown tier must not hide a bad regex."""
    minimal["rules"] = [
        {"name": "a", "tier": "nope", "when": {"has_tools": True}},
        _rule({"last_user_matches": "(?=x)"}, name="b"),
    ]
    wheres = [p.where for p in _error(minimal).problems]
    assert "rule 'a' (#1): tier" in wheres
    assert any(w.startswith("rule 'b' (#2): when") for w in wheres)


@pytest.mark.parametrize(
    ("mutate", "bad_hint"),
    [
        (lambda raw: raw.update(tier=raw.pop("tiers")), "did you mean 'tier'?"),
        (lambda raw: raw["rules"].append({"name": "n", "tier": "top", "when": {"name": "x"}}), "'name'?"),
        (lambda raw: raw["rules"].append({"name": "n", "tier": "top", "rule": {}}), "'rules'?"),
    ],
    ids=["top-level-tier", "name-in-condition", "rule-in-rule"],
)
def test_did_you_mean_only_suggests_keys_valid_there(
    minimal: dict[str, Any], mutate: Any, bad_hint: str
) -> None:
    """Hints come from every schema key at once: `tier:` at the top level got "did you mean
    'tier'?" (the key itself), `rule:` inside a rule got 'rules' (a top-level key)."""
    mutate(minimal)
    text = str(_error(minimal))
    assert "unknown key" in text
    assert bad_hint not in text


def test_a_mock_option_typo_fails_at_load() -> None:
    raw = {
        "providers": {"m": {"kind": "mock", "base_url": "mock://x?flaw_rat=0.3"}},
        "models": {"a": {"provider": "m", "id": "a", "price": {"input": 1, "output": 1}}},
        "tiers": {"t": ["a"]},
        "default_tier": "t",
    }
    with pytest.raises(RulesError) as caught:
        parse_rules(raw, "demo.yaml")
    assert "demo.yaml: provider 'm': base_url: unknown mock option 'flaw_rat'" in str(caught.value)
