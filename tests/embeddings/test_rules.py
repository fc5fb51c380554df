"""Embedding models, tiers and the `embeddings:` section in the rules file: what loads, how
an embeddings request is routed, and the load errors that name the file, the rule and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.embedding_params import embedding_decision, parse_embedding
from tier_router.routing.engine import Rules, UnknownModelError, WrongKindError
from tier_router.routing.loader import RulesError, load_rules, parse_rules
from tier_router.routing.request import parse_chat

from tests.support.rules import three_providers

PATH = "embeddings-test.yaml"


def doc(**changes: Any) -> dict[str, Any]:
    """`three_providers` plus embedding models `e-small` (openai-a) and `e-large` (openai-b),
    tiers `vec` = [e-small, e-large] and `vec-large` = [e-large], and an embeddings section:
    inputs of 1,000 tokens or more, or header x-vec: large, go to `vec-large`."""
    rules = three_providers()
    rules["models"]["e-small"] = {"provider": "openai-a", "id": "te-3-small", "kind": "embedding",
                                  "price": {"input": 0.02}}  # fmt: skip
    rules["models"]["e-large"] = {"provider": "openai-b", "id": "te-3-large", "kind": "embedding",
                                  "price": {"input": 0.13}}  # fmt: skip
    rules["tiers"].update({"vec": ["e-small", "e-large"], "vec-large": ["e-large"]})
    rules["embeddings"] = {
        "default_tier": "vec",
        "rules": [
            {"name": "long-input", "tier": "vec-large", "when": {"conversation_tokens": {"min": 1000}}},
            {"name": "asked", "tier": "vec-large", "when": {"header": {"name": "x-vec", "equals": "large"}}},
        ],
    }
    rules.update(changes)
    return rules


def problems(rules: dict[str, Any]) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(rules, PATH)
    assert str(caught.value).startswith(f"invalid rules file {PATH}")
    return [str(p) for p in caught.value.problems]


def decide(rules: Rules, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return embedding_decision(rules, parse_embedding(body), headers or {})


def test_embeddings_are_routed_by_their_own_rules_on_the_input() -> None:
    rules = parse_rules(doc(), PATH)
    short = decide(rules, {"model": "auto", "input": "hello"})
    assert (short.tier, short.label, [r.name for r in short.candidates]) == (
        "vec",
        "default",
        ["e-small", "e-large"],
    )
    long = decide(rules, {"model": "auto", "input": ["word " * 500, "word " * 400]})  # ~1,125 tokens
    assert (long.tier, long.label) == ("vec-large", "long-input")
    asked = decide(rules, {"model": "auto", "input": "hi"}, {"x-vec": "large"})
    assert (asked.tier, asked.label) == ("vec-large", "asked")
    named = decide(rules, {"model": "e-large", "input": [[1, 2]]})
    assert [r.name for r in named.candidates] == ["e-large", "e-small"]  # then the rest of its tier
    assert named.candidates[0].kind == "embedding"
    # chat routing is unchanged and never lands on an embedding tier
    chat = rules.decide(parse_chat({"model": "auto", "messages": [{"role": "user", "content": "w " * 5000}]}))
    assert chat.tier == "fast"


def test_names_of_the_other_kind_are_refused_both_ways() -> None:
    rules = parse_rules(doc(), PATH)
    with pytest.raises(WrongKindError, match="'fast' is a chat model or tier"):
        decide(rules, {"model": "fast", "input": "x"})
    with pytest.raises(WrongKindError, match="'vec' is an embedding model or tier"):
        rules.decide(parse_chat({"model": "vec", "messages": [{"role": "user", "content": "x"}]}))
    with pytest.raises(UnknownModelError):
        decide(rules, {"model": "nope", "input": "x"})


def test_auto_without_an_embeddings_section_names_the_embedding_models() -> None:
    rules = doc()
    del rules["embeddings"]
    loaded = parse_rules(rules, PATH)
    names = r"no `embeddings:` section.*vec, vec-large, e-small, e-large"
    with pytest.raises(UnknownModelError, match=names):
        decide(loaded, {"model": "auto", "input": "x"})
    assert decide(loaded, {"model": "vec", "input": "x"}).tier == "vec"


def test_pacing_never_derives_a_downgrade_between_kinds() -> None:
    rules = parse_rules(doc(budgets={"daily_usd": 10}), PATH)
    downgrade = rules.spec.budgets.pacing.downgrade
    assert downgrade is not None
    assert not {"vec", "vec-large"} & {*downgrade, *downgrade.values()}
    assert rules.same_kind("vec", "vec-large")
    assert not rules.same_kind("vec", "fast")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["tiers"].update(mixed=["primary", "e-small"]),
            "tier 'mixed': mixes chat and embedding models (primary (chat), e-small (embedding))",
        ),
        (
            lambda d: d["rules"].append({"name": "to-vec", "tier": "vec", "when": {"has_tools": True}}),
            "rule 'to-vec' (#2): tier: tier 'vec' is an embedding tier; this needs a chat tier",
        ),
        (lambda d: d.update(default_tier="vec"), "default_tier: tier 'vec' is an embedding tier"),
        (
            lambda d: d["embeddings"].update(default_tier="fast"),
            "embeddings.default_tier: tier 'fast' is a chat tier",
        ),
        (
            lambda d: d["embeddings"]["rules"].append(
                {"name": "x", "tier": "smart", "when": {"user": {"present": True}}}
            ),
            "embeddings rule 'x' (#3): tier: tier 'smart' is a chat tier",
        ),
        (
            lambda d: d["embeddings"]["rules"].append(
                {
                    "name": "tools",
                    "tier": "vec",
                    "when": {"any": [{"has_images": True}, {"message_count": {"min": 2}}]},
                }
            ),
            "embeddings rule 'tools' (#3): when.any[0].has_images: 'has_images' is a chat-only condition",
        ),
        (
            lambda d: d["embeddings"]["rules"].append(
                {"name": "nope", "tier": "vecc", "when": {"user": {"present": True}}}
            ),
            "embeddings rule 'nope' (#3): tier: unknown tier 'vecc'",
        ),
        (
            lambda d: d["embeddings"]["rules"][0]["when"].update(colour="red"),
            "embeddings rule 'long-input' (#1): when.colour: unknown key 'colour'",
        ),
        (
            lambda d: d["models"].update(
                e3={"provider": "anthropic", "id": "claude-embed", "kind": "embedding", "price": {"input": 1}}
            ),
            "model 'e3': kind: provider 'anthropic' (kind anthropic) has no embeddings API",
        ),
        (
            lambda d: d["models"]["e-small"]["price"].update(output=1.0),
            "model 'e-small': an embedding model is priced by input tokens only: remove price.output",
        ),
        (
            lambda d: d["tiers"].update(
                vec={"models": ["e-small"], "cascade": {"to": "smart", "on": ["truncated"]}}
            ),
            "tier 'vec': cascade: an embedding tier has no cascade",
        ),
    ],
)
def test_a_wrong_file_names_the_place_and_the_reason(change: Any, expected: str) -> None:
    rules = doc()
    change(rules)
    found = problems(rules)
    assert any(p.startswith(expected) for p in found), found


def test_the_demo_rules_have_the_embed_tier() -> None:
    demo_rules = load_rules(Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml")
    assert [r.name for r in demo_rules.tiers["embed"]] == ["embed-small", "embed-large"]
    assert decide(demo_rules, {"model": "auto", "input": "hello"}).tier == "embed"


def test_check_runs_embeddings_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tier_router.cli import main

    rules_path = tmp_path / "vec.yaml"
    rules_path.write_text(yaml.safe_dump(doc()), encoding="utf-8")
    examples = {
        "examples": [
            {"name": "short input", "request": {"input": "hi"},
             "expect": {"tier": "vec", "model": "e-small"}},
            {"name": "asked", "request": {"input": ["a", "b"]}, "headers": {"X-Vec": "large"},
             "expect": {"tier": "vec-large", "rule": "asked"}},
            {"name": "wrong", "request": {"input": "hi"}, "expect": {"tier": "fast"}},
            {"name": "bad", "request": {"input": 3}, "expect": {"tier": "vec"}},
        ]
    }  # fmt: skip
    examples_path = tmp_path / "vec.examples.yaml"
    examples_path.write_text(yaml.safe_dump(examples), encoding="utf-8")
    assert main(["check", str(rules_path)]) == 1
    out = capsys.readouterr().out
    assert "ok    short input -> vec/default" in out
    assert "ok    asked -> vec-large/asked" in out
    assert "FAIL  wrong: tier expected 'fast', got 'vec'" in out
    assert "FAIL  bad: invalid request: Invalid type for 'input'" in out
    assert "4 examples, 2 passed, 2 failed" in out


def test_the_docs_rules_snippet_loads_and_routes_as_described() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "embeddings.md").read_text(encoding="utf-8")
    snippet = yaml.safe_load(text.split("```yaml\n")[1].split("```")[0])
    rules = three_providers()
    rules["providers"].update(snippet["providers"])
    rules["models"].update(snippet["models"])
    rules["tiers"].update(snippet["tiers"])
    rules["embeddings"] = snippet["embeddings"]
    loaded = parse_rules(rules, "docs/embeddings.md")
    assert decide(loaded, {"model": "auto", "input": "short"}).tier == "embed"
    assert decide(loaded, {"model": "auto", "input": "x " * 5000}).rule_name == "long-input"
    assert decide(loaded, {"model": "auto", "input": "x"}, {"x-team": "search"}).rule_name == "search-team"


def test_cli_explain_routes_an_embeddings_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tier_router.cli import main

    rules_path = tmp_path / "vec.yaml"
    rules_path.write_text(yaml.safe_dump(doc()), encoding="utf-8")
    args = ["explain", "--rules", str(rules_path), "--embedding", "--header", "x-vec=large", "hello"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rule      asked" in out
    assert "e-large" in out
    assert "$0.13 in per 1M" in out
    assert main(["explain", "--rules", str(rules_path), "--embedding", "--model", "fast", "hello"]) == 1
    assert "'fast' is a chat model or tier" in capsys.readouterr().err


def test_the_docs_examples_snippet_is_what_check_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/embeddings.md's golden example passes `tier-router check` against the page's rules."""
    from tier_router.cli import main

    text = (Path(__file__).resolve().parents[2] / "docs" / "embeddings.md").read_text(encoding="utf-8")
    snippet, examples = (yaml.safe_load(part.split("```")[0]) for part in text.split("```yaml\n")[1:3])
    rules = three_providers()
    for section in ("providers", "models", "tiers"):
        rules[section].update(snippet[section])
    rules["embeddings"] = snippet["embeddings"]
    (tmp_path / "page.yaml").write_text(yaml.safe_dump(rules), encoding="utf-8")
    (tmp_path / "page.examples.yaml").write_text(yaml.safe_dump(examples), encoding="utf-8")
    assert main(["check", str(tmp_path / "page.yaml")]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert f"ok    {examples['examples'][0]['name']} -> embed-large/search-team" in out
    assert "1 example, 1 passed" in out or "1 examples, 1 passed" in out
