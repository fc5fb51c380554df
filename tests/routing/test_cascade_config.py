"""Cascades in the rules file: the mapping form of tiers, `validators:`, tier and rule cascades
compiled onto decisions, escalate / retier / cascade_path, every loader error naming the file,
the tier or rule and the field, and explain showing cascade, arm and split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import pytest
import yaml
from tier_router import cli
from tier_router.routing.engine import Decision, Rules
from tier_router.routing.loader import RulesError, load_rules, parse_rules
from tier_router.routing.request import Chat
from tier_router.validators import Ask, Choice, Validator, registry

MakeRules = Callable[..., Rules]
MakeChat = Callable[..., Chat]
STICKY = "x-router-sticky-key"
SHORT = {"last_user_chars": {"max": 20}}


class MinChars(Validator):
    """A second validator kind, registered for these tests only (the real kinds land elsewhere)."""

    kind = "min_chars_for_test"

    def __init__(self, least: int = 1) -> None:
        super().__init__()
        self.least = least

    @classmethod
    def configure(cls, options: Any) -> Self:
        if not isinstance(options, int) or isinstance(options, bool) or options < 1:
            raise ValueError("give a positive number of characters")
        return cls(options)

    def check(self, choice: Choice, ask: Ask) -> str | None:
        return f"shorter than {self.least} characters" if len(choice.text) < self.least else None


@pytest.fixture(autouse=True)
def min_chars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.KINDS, MinChars.kind, MinChars)


def names(decision: Decision) -> list[str]:
    return [route.name for route in decision.candidates]


def cascaded(**top: Any) -> dict[str, Any]:
    """MINIMAL's tiers with cascades: cheap → mid (held stream) → top."""
    return {
        "validators": {"substantive": {MinChars.kind: 40}, "cut": "truncated"},
        "tiers": {
            "cheap": {
                "models": ["small", "medium"],
                "cascade": {"to": "mid", "on": ["cut", "substantive"], "stream": "hold"},
            },
            "mid": {"models": ["medium", "large"], "cascade": {"to": "top", "on": ["truncated"]}},
            "top": ["large", "medium", "small"],
        },
        **top,
    }


@pytest.fixture
def rules(make_rules: MakeRules) -> Rules:
    return make_rules(
        [
            {
                "name": "tools",
                "tier": "cheap",
                "cascade": {"to": "top", "on": [{MinChars.kind: 5}, "truncated"]},
                "when": {"has_tools": True},
            },
            {"name": "short", "tier": "cheap", "when": SHORT},
        ],
        **cascaded(),
    )


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_tier_cascades_are_compiled(rules: Rules) -> None:
    assert set(rules.cascades) == {"cheap", "mid"}
    cheap = rules.cascades["cheap"]
    assert (cheap.to, cheap.hold_stream, cheap.source) == ("mid", True, "tier 'cheap'")
    assert [c.name for c in cheap.checks] == ["cut", "substantive"]  # reported under their names
    assert isinstance(cheap.checks[1], MinChars)
    assert cheap.checks[1].least == 40
    assert rules.cascades["mid"].hold_stream is False  # stream: pass by default
    assert rules.spec.tiers["cheap"] == ["small", "medium"]


def test_decision_gets_the_rules_cascade_else_the_tiers(rules: Rules, chat: MakeChat) -> None:
    short = rules.decide(chat("hi"))
    assert (short.rule_name, short.cascade) == ("short", rules.cascades["cheap"])
    tools = rules.decide(chat("hi", tools=TOOLS))
    assert tools.rule_name == "tools"
    assert tools.cascade is not None
    assert (tools.cascade.to, tools.cascade.source) == ("top", "rule 'tools'")
    assert [c.name for c in tools.cascade.checks] == [MinChars.kind, "truncated"]
    default = rules.decide(chat("a longer question than twenty characters"))
    assert (default.tier, default.cascade) == ("mid", rules.cascades["mid"])
    assert rules.decide(chat("hi", model="top")).cascade is None  # a tier without one


def test_a_tier_request_gets_the_tiers_cascade_a_model_request_none(rules: Rules, chat: MakeChat) -> None:
    assert rules.decide(chat("hi", model="cheap")).cascade is rules.cascades["cheap"]
    named = rules.decide(chat("hi", model="small"))
    assert (named.tier, named.cascade) == ("cheap", None)  # the client chose the model
    moved = rules.retier(named, "mid", "pacing")
    assert moved.cascade is None


def test_escalate_follows_the_tiers_cascades(rules: Rules, chat: MakeChat) -> None:
    short = rules.decide(chat("hi"))
    once = rules.escalate(short, "substantive: shorter than 40 characters")
    assert (once.tier, names(once), once.cascade) == ("mid", ["medium", "large"], rules.cascades["mid"])
    assert once.why == f"{short.why}; escalated: substantive: shorter than 40 characters"
    assert (once.rule_name, once.priority) == ("short", short.priority)
    twice = rules.escalate(once, "truncated: cut off")
    assert (twice.tier, twice.cascade) == ("top", None)
    with pytest.raises(ValueError, match="no cascade"):
        rules.escalate(twice, "x")
    # a rule's cascade goes to its own `to`, then that tier's own cascade applies
    tools = rules.escalate(rules.decide(chat("hi", tools=TOOLS)), "truncated: cut off")
    assert (tools.tier, tools.cascade) == ("top", None)


def test_cascade_path_lists_every_escalation_step(make_rules: MakeRules, chat: MakeChat) -> None:
    raw = cascaded()
    rules = make_rules([{"name": "short", "tier": "cheap", "when": SHORT}], **raw)
    path = rules.cascade_path(rules.decide(chat("hi")))
    assert [[r.name for r in chain] for chain in path] == [["medium", "large"], ["large", "medium", "small"]]
    assert rules.cascade_path(rules.decide(chat("hi", model="top"))) == ()
    # the chains are fitted to the request: a model too small for it is left out
    minimal_models = rules.spec.model_dump(by_alias=True)["models"]
    minimal_models["large"]["context_window"] = 100
    small_large = make_rules(
        [{"name": "short", "tier": "cheap", "when": SHORT}], models=minimal_models, **raw
    )
    decision = small_large.decide(chat("hi", max_tokens=500))
    assert [[r.name for r in chain] for chain in small_large.cascade_path(decision)] == [
        ["medium"],
        ["medium", "small"],
    ]


def test_cascade_path_uses_the_splits_of_the_same_sticky_id(make_rules: MakeRules, chat: MakeChat) -> None:
    raw = cascaded()
    raw["tiers"]["mid"]["models"] = [{"model": "medium", "weight": 1}, {"model": "large", "weight": 1}]
    rules = make_rules([{"name": "short", "tier": "cheap", "when": SHORT}], **raw)
    firsts = set()
    for i in range(100):
        decision = rules.decide(chat("hi"), {STICKY: f"u{i}"})
        (mid, _top) = rules.cascade_path(decision)
        assert list(mid) == list(rules.escalate(decision, "x").candidates)
        firsts.add(mid[0].name)
    assert firsts == {"medium", "large"}


def test_retier_keeps_a_rules_cascade_unless_it_points_at_the_new_tier(rules: Rules, chat: MakeChat) -> None:
    tools = rules.decide(chat("hi", tools=TOOLS))  # rule cascade → top
    to_mid = rules.retier(tools, "mid", "pacing")
    assert (to_mid.tier, to_mid.cascade) == ("mid", tools.cascade)
    to_top = rules.retier(tools, "top", "key allows only top")
    assert (to_top.tier, to_top.cascade) == ("top", None)  # top's own: none
    short = rules.decide(chat("hi"))  # the tier's cascade → replaced by the new tier's
    assert rules.retier(short, "mid", "pacing").cascade is rules.cascades["mid"]
    assert rules.retier(short, "top", "pacing").cascade is None


def test_as_dict_shows_cascade_experiment_sticky_and_split(make_rules: MakeRules, chat: MakeChat) -> None:
    raw = cascaded(experiments={"e": {"arms": {"a": 100}}})
    raw["tiers"]["cheap"]["models"] = [{"model": "small", "weight": 3}, "medium"]
    rules = make_rules([{"name": "short", "tier": "cheap", "arm": "e/a", "when": SHORT}], **raw)
    data = json.loads(json.dumps(rules.decide(chat("hi"), {STICKY: "s"}).as_dict()))
    assert data["cascade"] == {
        "to": "mid",
        "on": ["cut", "substantive"],
        "stream": "hold",
        "source": "tier 'cheap'",
    }
    assert (data["experiment"], data["arm"], data["sticky"]) == ("e", "a", f"header:{STICKY}")
    assert data["split"] == "small: 100% of tier 'cheap' by weight"
    plain = rules.decide(chat("a longer question than twenty characters")).as_dict()
    assert (plain["experiment"], plain["arm"], plain["sticky"], plain["split"]) == (None, None, "none", None)


# --- errors ---------------------------------------------------------------------------------------


def load_error(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(raw, "q.yaml")
    return str(info.value).splitlines()[1:]


def with_rules(minimal: dict[str, Any], *rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    minimal.update(cascaded(**top))
    minimal["rules"] = [{"name": "first", "tier": "mid", "when": SHORT}, *rules]
    return minimal


def rule(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "tier": "cheap", "when": SHORT, **fields}


@pytest.mark.parametrize(
    ("change", "lines"),
    [
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "premum", "on": ["truncated"]})),
            ["q.yaml: rule 'x' (#2): cascade.to: unknown tier 'premum' (known: cheap, mid, top)"],
            id="unknown-to",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "cheap", "on": ["truncated"]})),
            ["q.yaml: rule 'x' (#2): cascade.to: is the rule's own tier 'cheap': escalate to another tier"],
            id="own-tier",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(
                rule(cascade={"to": "top", "on": ["truncated", {MinChars.kind: 0}]})
            ),
            [f"q.yaml: rule 'x' (#2): cascade.on[1].{MinChars.kind}: give a positive number of characters"],
            id="validator-options",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "top", "on": ["truncated", "no-such"]})),
            ["q.yaml: rule 'x' (#2): cascade.on[1]: unknown validator 'no-such' (known: "],
            id="unknown-validator",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "top", "on": [5, {"a": 1, "b": 2}]})),
            [
                "q.yaml: rule 'x' (#2): cascade.on[0]: give a validator's name, or a one-key mapping",
                "q.yaml: rule 'x' (#2): cascade.on[1]: give a validator's name, or a one-key mapping",
            ],
            id="entry-shape",
        ),
        pytest.param(
            lambda raw: raw["validators"].update(odd=["truncated"]),
            ["q.yaml: validator 'odd': give a validator's name, or a one-key mapping {kind: options}"],
            id="named-entry-shape",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "top", "on": []})),
            ["q.yaml: rule 'x' (#2): cascade.on: List should have at least 1 item after validation, not 0"],
            id="empty-on",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(
                rule(cascade={"to": "top", "on": ["truncated"], "stream": "buffer"})
            ),
            ["q.yaml: rule 'x' (#2): cascade.stream: Input should be 'pass' or 'hold' (got 'buffer')"],
            id="stream",
        ),
        pytest.param(
            lambda raw: raw["rules"].append(rule(cascade={"to": "top", "on": ["truncated"], "onn": 1})),
            ["q.yaml: rule 'x' (#2): cascade.onn: unknown key 'onn' (did you mean 'on'?)"],
            id="unknown-key",
        ),
        pytest.param(
            lambda raw: raw["tiers"].update(
                top={"models": ["large"], "cascade": {"to": "cheap", "on": ["truncated"]}}
            ),
            ["q.yaml: cascade cycle: cheap → mid → top → cheap"],
            id="cycle",
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"]["cascade"].update(to="mid"),
            ["q.yaml: cascade cycle: mid → mid"],
            id="self-cycle",
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"]["cascade"].update(to="premium"),
            ["q.yaml: tier 'mid': cascade.to: unknown tier 'premium' (known: cheap, mid, top)"],
            id="tier-unknown-to",
        ),
        pytest.param(
            lambda raw: raw["validators"].update(substantive={MinChars.kind: "many"}),
            [f"q.yaml: validator 'substantive': {MinChars.kind}: give a positive number of characters"],
            id="named-validator",  # and the cascade naming it is not reported again
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"].update(models=[{"model": "medium", "weight": 20000}, "large"]),
            ["q.yaml: tier 'mid': models[0].weight: Input should be less than or equal to 10000 (got 20000)"],
            id="weight-range",
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"].update(
                models=[{"model": "medium", "weight": 0}, {"model": "large", "weight": 0}]
            ),
            ["q.yaml: tier 'mid': models: every weight is 0: give at least one model a positive weight"],
            id="all-zero",
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"].update(models=[{"model": "mediun", "weight": 1}, "large"]),
            [
                "q.yaml: tier 'mid': models[0]: unknown model 'mediun' (known: large, medium, small);"
                " did you mean 'medium'?"
            ],
            id="unknown-weighted-model",
        ),
        pytest.param(
            lambda raw: raw["tiers"]["mid"].update(models=[{"model": "medium", "wieght": 1}]),
            ["q.yaml: tier 'mid': models[0].wieght: unknown key 'wieght' (did you mean 'weight'?)"],
            id="weight-typo",
        ),
        pytest.param(
            lambda raw: raw["tiers"].update(top="large"),
            ["q.yaml: tier 'top': give a list of models, or a mapping {models: [...], cascade: {...}}"],
            id="tier-shape",
        ),
        pytest.param(
            lambda raw: raw["tiers"].update(top=["large", "bad name"]),
            ["q.yaml: tier 'top': [1]: String should match pattern"],  # as before the mapping form
            id="list-form-path",
        ),
        pytest.param(
            lambda raw: raw.setdefault("routing", {}).update(sticky=["header:x", "cookie:y"]),
            ["q.yaml: routing.sticky: [1]: 'cookie:y' is not a sticky source (give header:<name>, user,"],
            id="sticky-source",
        ),
    ],
)
def test_errors_name_file_owner_and_field(
    minimal: dict[str, Any], change: Callable[[dict[str, Any]], Any], lines: list[str]
) -> None:
    raw = with_rules(minimal)
    change(raw)
    got = load_error(raw)
    assert len(got) == len(lines), got
    for line, expected in zip(got, lines, strict=True):
        assert line.startswith(expected), got


# --- explain --------------------------------------------------------------------------------------


def test_explain_shows_cascade_arm_split_and_sticky(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, minimal: dict[str, Any]
) -> None:
    raw = with_rules(minimal, experiments={"e": {"arms": {"a": 100}}})
    raw["tiers"]["cheap"]["models"] = [{"model": "small", "weight": 1}, {"model": "medium", "weight": 0}]
    raw["rules"] = [{"name": "short", "tier": "cheap", "arm": "e/a", "when": SHORT}]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    argv = ["explain", "hi", "--rules", str(path), "--header", f"{STICKY}=SECRET-ID"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "split     small: 100% of tier 'cheap' by weight" in lines
    assert "arm       e: a" in lines
    assert f"sticky    header:{STICKY} (the sticky id's source)" in lines
    assert "cascade   to mid on cut, substantive (stream: hold; from tier 'cheap')" in lines
    assert lines[-1].startswith("features  ")
    assert "SECRET-ID" not in out
    assert cli.main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["cascade"]["on"] == ["cut", "substantive"]
    assert (data["experiment"], data["arm"], data["split"]) == (
        "e",
        "a",
        "small: 100% of tier 'cheap' by weight",
    )
    assert "SECRET-ID" not in out
    assert cli.main(["explain", "a longer question than twenty characters", "--rules", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "cascade   to top on truncated (stream: pass; from tier 'mid')" in lines
    assert not any(line.startswith(("split", "arm", "sticky")) for line in lines)


# --- the syntax as written in YAML -----------------------------------------------------------------

DESIGN_EXAMPLE = f"""
version: 1
providers:
  local: {{kind: mock, base_url: "mock://local"}}
models:
  small: {{provider: local, id: small-1, price: {{input: 0.1, output: 0.4}}}}
  medium: {{provider: local, id: medium-1, price: {{input: 0.4, output: 1.6}}}}
  deepseek-chat: {{provider: local, id: ds, price: {{input: 0.3, output: 1.1}}}}
  large: {{provider: local, id: large-1, price: {{input: 2, output: 8}}}}
validators:
  substantive: {{{MinChars.kind}: 40}}
tiers:
  budget: [small, medium]
  standard:
    models:
      - {{model: deepseek-chat, weight: 90}}
      - {{model: small, weight: 10}}
      - medium
    cascade: {{to: premium, on: [truncated, substantive], stream: hold}}
  premium: [large]
default_tier: standard
experiments:
  cheap-chat:
    arms: {{control: 50, cascade: 50}}
routing:
  sticky: ["header:x-router-sticky-key", user, key]
rules:
  - name: short-chat
    tier: budget
    rollout: 10%
    arm: cheap-chat/cascade
    cascade: {{to: standard, on: [truncated, {{{MinChars.kind}: 20}}]}}
    when: {{last_user_tokens: {{max: 25}}}}
"""


def test_the_design_example_loads_with_unquoted_on(tmp_path: Path, chat: MakeChat) -> None:
    """`on:` unquoted is YAML 1.1's boolean True to PyYAML: the cascade still reads it as `on`."""
    path = tmp_path / "router.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    rules = load_rules(path)
    standard = rules.cascades["standard"]
    assert ([c.name for c in standard.checks], standard.to, standard.hold_stream) == (
        ["truncated", "substantive"],
        "premium",
        True,
    )
    assert rules.spec.tiers["standard"] == ["deepseek-chat", "small", "medium"]
    decisions = [rules.decide(chat("hi"), {STICKY: f"u{i}"}) for i in range(2000)]
    applied = [d for d in decisions if d.rule_name == "short-chat"]
    assert applied
    assert all(d.cascade is not None and d.cascade.source == "rule 'short-chat'" for d in applied)
    assert {d.arm for d in applied} == {"cascade"}
    assert {d.candidates[0].name for d in decisions if d.tier == "standard"} == {"deepseek-chat", "small"}
