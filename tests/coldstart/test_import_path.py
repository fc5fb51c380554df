"""The Lambda handler's import path, in a fresh process: with compiled rules, the init phase
imports neither pydantic nor YAML (nor the quality, replay or calibration tooling), and the
first chat request still does not.

The process is a real one (the import is the thing measured), serving one Function URL event
through `lambda_handler` against the fake OpenAI upstream on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tier_router.routing.compiled import compile_file

from tests.deploy.conftest import base_env, load_event, rules_for
from tests.support.fake_providers import FakeProviders

ROOT = Path(__file__).resolve().parents[2]
ROUTER_KEY = "rk-coldstart-import-path-0123456789"
NEVER_ON_THE_PATH = (
    "pydantic",
    "pydantic_core",
    "yaml",
    "tier_router.schema.rules_file",
    "tier_router.keys_file",
)

NOT_AFTER_INIT = (
    "tier_router.providers.mock",  # imported by the first mock:// request (gateway.LazyMockTransport)
    "tier_router.quality.feedback",  # imported by the first POST /v1/feedback (app.feedback)
    "tier_router.quality.counts",
    "tier_router.validators",  # a decision with a cascade, or a rules file with validators
    "tier_router.holdback",  # a stream held back by its cascade (`stream: hold`)
    "tier_router.probe",
    "tier_router.cli",
    "tier_router.tracing",
    "difflib",  # "did you mean" in a rules file's problems (routing.problem.unknown)
)
"""Modules neither the init nor a first chat request to an OpenAI-style provider imports, with
compiled production-shaped rules (budgets and rate limits on, no mock provider, no cascade,
no quality loop): each is imported by the first request that needs it."""

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
import tier_router.lambda_entry as entry
after_init = sorted(sys.modules)
event = json.loads(sys.argv[2])
result = entry.lambda_handler(event, None)
print(json.dumps({"init": after_init, "first": sorted(sys.modules), "status": result["statusCode"]}))
"""


def run_handler(env: dict[str, str]) -> dict[str, Any]:
    event = load_event("function_url_chat_base64.json", f"Bearer {ROUTER_KEY}")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", CHILD, str(ROOT / "handler"), json.dumps(event)],
        env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


@pytest.fixture
def lambda_env(tmp_path: Path, fakes: FakeProviders) -> tuple[dict[str, str], Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(rules_for(fakes.a.url), indent=2))
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"team={ROUTER_KEY}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    return env, rules


def test_with_compiled_rules_neither_init_nor_the_first_request_imports_pydantic_or_yaml(
    lambda_env: tuple[dict[str, str], Path],
) -> None:
    env, rules = lambda_env
    compile_file(rules)
    result = run_handler(env)
    assert result["status"] == 200
    for name in NEVER_ON_THE_PATH:
        assert name not in result["init"], f"{name} imported at init"
        assert name not in result["first"], f"{name} imported by the first request"
    assert not [m for m in result["init"] if m.startswith(("tier_router.replay", "tier_router.calibrate"))]
    assert "compiled rules" not in result["stderr"]


def test_modules_the_first_chat_request_does_not_need_are_not_imported(
    lambda_env: tuple[dict[str, str], Path],
) -> None:
    env, rules = lambda_env
    compile_file(rules)
    result = run_handler(env)
    assert result["status"] == 200
    for name in NOT_AFTER_INIT:
        loaded = [m for m in result["first"] if m == name or m.startswith(f"{name}.")]
        assert not loaded, f"{name} imported by the init or the first request: {loaded}"


GC_CHILD = """
import gc, json, sys
sys.path.insert(0, sys.argv[1])
before = sum(s["collections"] for s in gc.get_stats())
import tier_router.lambda_entry
after = sum(s["collections"] for s in gc.get_stats())
print(json.dumps({"collections": after - before, "enabled": gc.isenabled()}))
"""


def test_the_init_runs_no_cyclic_collection_and_leaves_the_collector_on(
    lambda_env: tuple[dict[str, str], Path],
) -> None:
    """Init only builds what lives as long as the process: walking it ~80 times for cycles found
    nothing (lambda_entry turns the collector off for the imports that build the app)."""
    env, rules = lambda_env
    compile_file(rules)
    proc = subprocess.run(
        [sys.executable, "-I", "-c", GC_CHILD, str(ROOT / "handler")],
        env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["enabled"] is True
    # at most one, before lambda_entry's first line runs (loading it); ~80 with the collector on
    assert result["collections"] <= 1


def test_without_compiled_rules_the_full_loader_runs_and_says_so(
    lambda_env: tuple[dict[str, str], Path],
) -> None:
    env, rules = lambda_env
    result = run_handler(env)
    assert result["status"] == 200
    assert "pydantic" in result["init"]
    assert f"no compiled rules rules.yaml.compiled.json: loading {rules} in full" in result["stderr"]


def test_a_broken_lazily_imported_mock_provider_fails_its_first_request_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    import httpx
    from tier_router.gateway import LazyMockTransport

    monkeypatch.setitem(sys.modules, "tier_router.providers.mock", None)  # `import` raises ImportError
    transport = LazyMockTransport()
    request = httpx.Request(
        "POST", "mock://m/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    with pytest.raises(ImportError):
        asyncio.run(transport.handle_async_request(request))
    monkeypatch.delitem(sys.modules, "tier_router.providers.mock")
    answer = asyncio.run(transport.handle_async_request(request))  # the next request imports it
    assert answer.status_code == 200
    assert "You said: hi" in asyncio.run(answer.aread()).decode()
