"""`tier-router check` and `tier-router explain`, driven through `cli.main(argv)`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from tier_router import cli

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_examples(path: Path, examples: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"examples": examples}, allow_unicode=True), encoding="utf-8")
    return path


# --- check --------------------------------------------------------------------------------------


def test_check_shipped_files(capsys: Capsys, shipped_rules_path: Path, shipped_examples_path: Path) -> None:
    code, out, err = run(capsys, "check", str(shipped_rules_path), "--examples", str(shipped_examples_path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{shipped_rules_path}: valid (4 providers, 9 models, 3 tiers, 9 rules)"
    assert "ok    greeting is budget -> budget/short-chat" in lines
    count = len(yaml.safe_load(shipped_examples_path.read_text(encoding="utf-8"))["examples"])
    assert lines[-1] == f"{shipped_examples_path}: {count} examples, {count} passed, 0 failed"
    assert err == ""


def test_check_defaults_to_rules_router_yaml(
    capsys: Capsys, shipped_rules_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIER_ROUTER_RULES", raising=False)
    monkeypatch.chdir(shipped_rules_path.parent.parent)
    code, out, _ = run(capsys, "check")
    assert code == 0
    assert out.startswith("rules/router.yaml: valid (")
    assert "rules/examples.yaml: " in out  # examples.yaml beside router.yaml is found


def test_check_reads_tier_router_rules(
    capsys: Capsys, broken_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = broken_dir / "unknown_tier_in_rule.yaml"
    monkeypatch.setenv("TIER_ROUTER_RULES", str(broken))
    code, out, err = run(capsys, "check")
    assert code == 1
    assert out == ""
    assert f"{broken}: rule 'route-code' (#1): tier: unknown tier 'premum'" in err


def test_check_fails_naming_the_example(capsys: Capsys, shipped_rules_path: Path, tmp_path: Path) -> None:
    examples = write_examples(
        tmp_path / "examples.yaml",
        [
            {
                "name": "greeting is budget",
                "prompt": "hi",
                "expect": {"tier": "budget", "rule": "short-chat"},
            },
            {
                "name": "greeting is premium (wrong)",
                "prompt": "hi",
                "expect": {"tier": "premium", "priority": "high"},
            },
            {"name": "first model", "prompt": "hi", "expect": {"model": "gpt-4.1-nano"}},
        ],
    )
    code, out, _ = run(capsys, "check", str(shipped_rules_path), "--examples", str(examples))
    assert code == 1
    lines = out.splitlines()
    assert "ok    greeting is budget -> budget/short-chat" in lines
    assert (
        "FAIL  greeting is premium (wrong): tier expected 'premium', got 'budget'; "
        "priority expected 'high', got 'normal' (why: last_user_tokens=1 (max 80); message_count=1 (max 6))"
    ) in lines
    assert "FAIL  first model: model expected 'gpt-4.1-nano', got 'deepseek-chat'" in out
    assert lines[-1] == f"{examples}: 3 examples, 1 passed, 2 failed"


def test_check_example_with_unknown_model_fails(
    capsys: Capsys, shipped_rules_path: Path, tmp_path: Path
) -> None:
    examples = write_examples(
        tmp_path / "examples.yaml",
        [
            {
                "name": "typo model",
                "request": {"model": "gpt4", "messages": [{"role": "user", "content": "x"}]},
                "expect": {"tier": "budget"},
            }
        ],
    )
    code, out, _ = run(capsys, "check", str(shipped_rules_path), "--examples", str(examples))
    assert code == 1
    assert (
        "FAIL  typo model: The model 'gpt4' does not exist on this router. Use one of: auto, budget," in out
    )


def test_check_invalid_examples_file(capsys: Capsys, shipped_rules_path: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.yaml", [{"name": "x", "prompt": "hi", "expct": {}}])
    code, _, err = run(capsys, "check", str(shipped_rules_path), "--examples", str(examples))
    assert code == 1
    assert f"{examples}: examples[0].expct: unknown key 'expct'" in err
    assert f"{examples}: examples[0].expect: missing required key 'expect'" in err


def test_check_broken_rules_file(capsys: Capsys, broken_dir: Path) -> None:
    path = broken_dir / "unknown_provider.yaml"
    code, out, err = run(capsys, "check", str(path))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"invalid rules file {path} (1 problem)",
        f"{path}: model 'big': provider: unknown provider 'opeanai' (known: openai); did you mean 'openai'?",
    ]


def test_check_bad_regex(capsys: Capsys, broken_dir: Path) -> None:
    path = broken_dir / "bad_regex_backreference.yaml"
    code, out, err = run(capsys, "check", str(path))
    assert code == 1
    assert out == ""
    head, line = err.splitlines()
    assert head == f"invalid rules file {path} (1 problem)"
    assert line.startswith(f"{path}: rule 'route-code' (#1): when")
    assert line.endswith(": invalid regex '(a)\\\\1': invalid escape sequence: \\1")


def test_check_without_examples_file(capsys: Capsys, shipped_rules_path: Path, tmp_path: Path) -> None:
    rules = shutil.copy(shipped_rules_path, tmp_path / "prod.yaml")
    code, out, err = run(capsys, "check", str(rules))
    assert code == 0
    assert "valid (" in out
    assert "no examples file found" in err


def test_check_finds_stem_examples_beside_the_rules(
    capsys: Capsys, shipped_rules_path: Path, tmp_path: Path
) -> None:
    rules = shutil.copy(shipped_rules_path, tmp_path / "prod.yaml")
    write_examples(
        tmp_path / "prod.examples.yaml", [{"name": "wrong", "prompt": "hi", "expect": {"tier": "premium"}}]
    )
    code, out, _ = run(capsys, "check", str(rules))
    assert code == 1
    assert "FAIL  wrong: tier expected 'premium', got 'budget'" in out


# --- explain ------------------------------------------------------------------------------------


def explain_json(capsys: Capsys, *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "explain", *argv, "--json")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1  # one JSON object on one line
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def test_explain_json(capsys: Capsys, shipped_rules_path: Path) -> None:
    data = explain_json(capsys, "hi", "--rules", str(shipped_rules_path))
    assert {"tier", "rule", "chain", "features"} <= set(data)
    assert (data["tier"], data["rule"]) == ("budget", "short-chat")
    assert [c["model"] for c in data["chain"]] == ["deepseek-chat", "gemini-2.5-flash-lite", "gpt-4.1-nano"]
    assert data["chain"][0]["provider"] == "deepseek"
    assert data["features"]["last_user_chars"] == 2


def test_explain_header_changes_the_rule(capsys: Capsys, shipped_rules_path: Path) -> None:
    rules = ("--rules", str(shipped_rules_path))
    data = explain_json(capsys, "Look at this diff please.", *rules, "--header", "x-task=code-review")
    assert (data["tier"], data["rule"]) == ("premium", "caller-asks-premium")
    data = explain_json(
        capsys,
        "Look at this diff please.",
        *rules,
        "--header",
        "X-Task = batch",
        "--header",
        "x-priority=high",
    )
    assert (data["rule"], data["priority"], data["priority_source"]) == ("background-batch", "high", "header")


def test_explain_request_file(capsys: Capsys, shipped_rules_path: Path, tmp_path: Path) -> None:
    body = {
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    data = explain_json(capsys, "--request", str(path), "--rules", str(shipped_rules_path))
    assert (data["rule"], data["requested_model"]) == ("tools-and-json", "auto")
    assert data["features"]["has_tools"] is True
    # a model in the file wins over --model's default
    path.write_text(json.dumps({**body, "model": "premium"}), encoding="utf-8")
    data = explain_json(capsys, "--request", str(path), "--rules", str(shipped_rules_path))
    assert (data["rule"], data["tier"]) == ("explicit", "premium")


def test_explain_request_from_stdin(
    capsys: Capsys, shipped_rules_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Prove it, step by step."}]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(body)))
    data = explain_json(capsys, "--request", "-", "--rules", str(shipped_rules_path))
    assert (data["requested_model"], data["rule"]) == ("gpt-4o", "hard-reasoning")


def test_explain_model_and_system(capsys: Capsys, tmp_path: Path, minimal: dict[str, Any]) -> None:
    minimal["rules"] = [{"name": "lawyer", "tier": "top", "when": {"system_matches": "lawyer"}}]
    rules = tmp_path / "r.yaml"
    rules.write_text(yaml.safe_dump(minimal), encoding="utf-8")
    assert (
        explain_json(capsys, "hi", "--rules", str(rules), "--system", "you are a lawyer")["rule"] == "lawyer"
    )
    assert explain_json(capsys, "hi", "--rules", str(rules))["rule"] == "default"
    data = explain_json(capsys, "hi", "--rules", str(rules), "--model", "large")
    assert [c["model"] for c in data["chain"]] == ["large", "medium"]


def test_explain_unknown_model(capsys: Capsys, shipped_rules_path: Path) -> None:
    code, out, err = run(capsys, "explain", "hi", "--model", "gpt-5", "--rules", str(shipped_rules_path))
    assert code == 1
    assert out == ""
    assert err.strip() == (
        "The model 'gpt-5' does not exist on this router. Use one of: auto, budget, claude-haiku-4.5, "
        "claude-sonnet-4.5, deepseek-chat, gemini-2.5-flash, gemini-2.5-flash-lite, gemini-2.5-pro, "
        "gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, gpt-4o, gpt-4o-mini, premium, standard."
    )


def test_explain_text_output(capsys: Capsys, shipped_rules_path: Path) -> None:
    code, out, _ = run(
        capsys, "explain", "a" * 900_000, "--model", "budget", "--rules", str(shipped_rules_path)
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "rule      explicit"
    assert "tier      budget" in lines
    assert "priority  normal (from default)" in lines
    assert any(line.startswith("  1. gemini-2.5-flash-lite") for line in lines)
    assert any(
        line.startswith("  -  deepseek-chat") and "skipped: context window 128000" in line for line in lines
    )
    assert lines[-1].startswith("features  last_user_chars=900000, ")
    assert "aaaa" not in out  # the prompt is never echoed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["hi", "--header", "no-equals-sign"],
            "invalid request: --header expects NAME=VALUE, got 'no-equals-sign'",
        ),
        ([], "invalid request: give a PROMPT or --request FILE"),
        (["--request", "/nonexistent/request.json"], "invalid request: [Errno 2] No such file or directory"),
    ],
)
def test_explain_invalid_input(
    capsys: Capsys, shipped_rules_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, "explain", *argv, "--rules", str(shipped_rules_path))
    assert code == 2
    assert out == ""
    assert err.startswith(message)


def test_explain_invalid_request_body(capsys: Capsys, shipped_rules_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"messages": []}), encoding="utf-8")
    code, _, err = run(capsys, "explain", "--request", str(path), "--rules", str(shipped_rules_path))
    assert code == 2
    assert err.startswith("invalid request: List should have at least 1 item")
    path.write_text("[1, 2]", encoding="utf-8")
    code, _, err = run(capsys, "explain", "--request", str(path), "--rules", str(shipped_rules_path))
    assert (code, err.strip()) == (2, "invalid request: the request file must hold a JSON object")


def test_explain_with_broken_rules(capsys: Capsys, broken_dir: Path) -> None:
    path = broken_dir / "empty_chain.yaml"
    code, out, err = run(capsys, "explain", "hi", "--rules", str(path))
    assert code == 1
    assert out == ""
    assert f"{path}: tier 'premium': empty chain: list at least one model" in err


def test_no_command_prints_help(capsys: Capsys) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "check" in out
    assert "explain" in out


def test_explain_key_places_the_request_in_the_demo_split(capsys: Capsys) -> None:
    demo = Path(__file__).resolve().parents[2] / "rules" / "local-demo.yaml"
    picks = {}
    for key in ("alice", "ivan"):
        assert cli.main(["explain", "hello there", "--rules", str(demo), "--key", key, "--json"]) == 0
        out = capsys.readouterr().out
        data = json.loads(out)
        picks[key] = (data["chain"][0]["model"], data["sticky"])
        assert key not in out  # only a hash of the sticky id is kept
    assert picks == {"alice": ("small", "key"), "ivan": ("tiny", "key")}
