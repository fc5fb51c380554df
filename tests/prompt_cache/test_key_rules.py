"""The `prompt_cache_key` provider option, decided once at load (fully and compiled), the hints
each candidate gets from it, and what `tier-router explain` shows offline."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router.cli import main
from tier_router.providers.anthropic_adapter import AnthropicAdapter
from tier_router.providers.cache_hints import KEYED, NO_HINTS, CacheHints, hints_for
from tier_router.providers.openai_compat import OpenAICompatAdapter
from tier_router.routing.compiled import compile_file, load_rules_fast
from tier_router.routing.conversation import identify
from tier_router.routing.loader import load_rules, parse_rules
from tier_router.routing.request import parse_chat
from tier_router.routing.stickiness import Placement, Stick

from tests.support.rules import three_providers

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]


def doc(
    a_base: str = "https://api.openai.com/v1", sections: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """openai-a at `a_base`, openai-b at backup.test; `options`: provider → its prompt_cache_key."""
    rules = three_providers(a_base, **(sections or {}))
    for provider, value in options.items():
        rules["providers"][provider.replace("_", "-")]["prompt_cache_key"] = value
    return rules


def sends(rules: dict[str, Any]) -> dict[str, bool]:
    spec = parse_rules(rules, "router.yaml").spec
    return {name: p.sends_prompt_cache_key for name, p in spec.providers.items()}


@pytest.mark.parametrize(
    ("a_base", "options", "expected"),
    [
        ("https://api.openai.com/v1", {}, (True, False)),
        ("https://API.OpenAI.com/v1/", {}, (True, False)),
        ("https://eu.api.openai.com/v1", {}, (False, False)),
        ("https://api.openai.com.evil.test/v1", {}, (False, False)),
        ("https://api.openai.com/v1", {"openai_a": False}, (False, False)),
        ("https://api.openai.com/v1", {"openai_b": True, "anthropic": False}, (True, True)),
    ],
)
def test_decided_at_load_from_the_option_else_the_host(
    a_base: str, options: dict[str, bool], expected: tuple[bool, bool]
) -> None:
    """(openai-a, openai-b); the Anthropic provider never sends one."""
    assert sends(doc(a_base, **options)) == {
        "openai-a": expected[0],
        "openai-b": expected[1],
        "anthropic": False,
    }


def test_the_file_keeps_what_it_said(tmp_path: Path) -> None:
    """Unset stays unset in the parsed file (the decision is the provider's, not a rewrite)."""
    spec = parse_rules(doc(openai_b=True), "router.yaml").spec
    assert spec.providers["openai-a"].prompt_cache_key is None
    assert spec.providers["openai-b"].prompt_cache_key is True


def test_the_compiled_form_decides_the_same(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(doc(openai_b=True)))
    compile_file(path)
    full, fast = load_rules(path).spec.providers, load_rules_fast(path).spec.providers
    assert type(fast["openai-a"]).__module__ != type(full["openai-a"]).__module__  # a runtime form
    for name in full:
        assert fast[name].sends_prompt_cache_key == full[name].sends_prompt_cache_key
    decided = [fast[n].sends_prompt_cache_key for n in ("openai-a", "openai-b", "anthropic")]
    assert decided == [True, True, False]


@pytest.mark.parametrize(
    ("provider", "value", "reason"),
    [
        ("anthropic", True, "the Anthropic API has no prompt_cache_key"),
        ("openai-a", "always", "valid boolean"),
    ],
)
def test_check_refuses_bad_values_naming_file_place_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], provider: str, value: Any, reason: str
) -> None:
    rules = doc()
    rules["providers"][provider]["prompt_cache_key"] = value
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(rules))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if reason in line]
    assert lines, out
    assert str(path) in lines[0]
    assert f"provider '{provider}'" in lines[0]
    assert "prompt_cache_key" in lines[0]


def test_hints_per_candidate() -> None:
    rules = parse_rules(doc(sections={"prompt_cache": {"auto": True}}), "router.yaml")
    decision = rules.decide(parse_chat({"model": "fast", "messages": MESSAGES}))
    a, b = rules.routes["primary"], rules.routes["secondary"]
    assert decision.conversation is None
    assert hints_for(decision, a) == CacheHints(1024) == hints_for(decision, b)
    placed = replace(decision, conversation=Placement("0123456789abcdef", Stick.NEW))
    assert hints_for(placed, a) == CacheHints(1024, "tr-0123456789abcdef")
    assert hints_for(placed, b) == CacheHints(1024)
    off = replace(placed, prompt_cache=None)
    assert hints_for(off, b) is NO_HINTS  # nothing to hint: the shared value, no allocation
    assert hints_for(off, a) == CacheHints(None, "tr-0123456789abcdef")


def test_adapters_add_the_key_only_where_the_client_sent_none() -> None:
    rules = parse_rules(doc(), "router.yaml")
    route = rules.routes["primary"]
    hints = CacheHints(None, "tr-00")
    adapter = OpenAICompatAdapter()
    for body, sent_key, work in [
        ({"messages": MESSAGES}, "tr-00", KEYED),
        ({"messages": MESSAGES, "prompt_cache_key": None}, "tr-00", KEYED),
        ({"messages": MESSAGES, "prompt_cache_key": "mine"}, "mine", None),
        ({"messages": MESSAGES, "prompt_cache_key": ""}, "", None),
    ]:
        request = adapter.build(route, body, "sk", hints)
        assert json.loads(request.content)["prompt_cache_key"] == sent_key
        assert request.cache == work
    untouched = adapter.build(route, {"messages": MESSAGES}, "sk")
    assert "prompt_cache_key" not in json.loads(untouched.content)
    assert untouched.cache is None
    claude = AnthropicAdapter().build(rules.routes["claude"], {"messages": MESSAGES}, "sk", hints)
    assert "prompt_cache_key" not in json.loads(claude.content)
    assert claude.cache is None


# -- tier-router explain, offline --------------------------------------------------------------


@pytest.fixture
def rules_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TIER_ROUTER_STORE", raising=False)
    path = tmp_path / "router.yaml"
    path.write_text(
        yaml.safe_dump(
            doc(sections={"prompt_cache": {"auto": True, "tiers": {"fast": {"min_tokens": 2048}}}})
        )
    )
    return path


def explain(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> str:
    assert main(["explain", "--rules", str(path), *args]) == 0
    return capsys.readouterr().out


def test_explain_json_shows_setting_conversation_and_offline_note(
    capsys: pytest.CaptureFixture[str], rules_path: Path
) -> None:
    data = json.loads(explain(capsys, rules_path, "--system", "Be brief.", "hello there", "--json"))
    assert data["prompt_cache"] == {"min_tokens": 2048}
    label = identify({"messages": MESSAGES}, {}, "").label
    assert data["conversation"]["conversation"] == label
    assert data["conversation"]["stick"] == "unread"
    assert data["conversation"]["source"] == "prefix"
    assert "not read offline" in data["conversation"]["note"]
    keyed = json.loads(
        explain(capsys, rules_path, "--system", "Be brief.", "hello there", "--json", "--key", "k1")
    )
    assert keyed["conversation"]["conversation"] == identify({"messages": MESSAGES}, {}, "k1").label != label
    named = json.loads(explain(capsys, rules_path, "hi", "--model", "primary", "--json"))
    assert named["conversation"]["stick"] == "off"  # a named model: stickiness does not apply


def test_explain_text_names_the_key_and_its_models(
    capsys: pytest.CaptureFixture[str], rules_path: Path
) -> None:
    out = explain(capsys, rules_path, "--system", "Be brief.", "hello there").splitlines()
    label = identify({"messages": MESSAGES}, {}, "").label
    assert out[-1].startswith("features  ")
    assert out[-3] == (
        f"conversation  {label} (id from prefix;"
        " stickiness is not read offline: the rules' decision is shown)"
    )
    assert out[-2] == (
        f"prompt cache  breakpoints from 2048 tokens; prompt_cache_key tr-{label} to primary"
        " (unless the request has its own)"
    )
    proving = explain(capsys, rules_path, "prove it", "--header", "x-conversation-id=c-1").splitlines()
    own = identify({}, {"x-conversation-id": "c-1"}, "").label
    assert f"conversation  {own} (id from header;" in proving[-3]
    assert proving[-2] == "prompt cache  breakpoints from 1024 tokens"  # tier smart: no provider takes a key


def test_explain_without_conversations(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIER_ROUTER_STORE", raising=False)
    path = tmp_path / "router.yaml"
    path.write_text(yaml.safe_dump(doc(sections={"conversations": {"sticky": False}})))
    out = explain(capsys, path, "hello").splitlines()
    assert out[-2] == "prompt cache  breakpoints off"
    assert not any(line.startswith("conversation") for line in out)
    assert json.loads(explain(capsys, path, "hello", "--json"))["conversation"] is None


def test_explain_refuses_a_bad_explicit_id(capsys: pytest.CaptureFixture[str], rules_path: Path) -> None:
    assert (
        main(["explain", "--rules", str(rules_path), "hi", "--header", f"x-conversation-id={'x' * 600}"]) == 2
    )
    assert "x-conversation-id" in capsys.readouterr().err
