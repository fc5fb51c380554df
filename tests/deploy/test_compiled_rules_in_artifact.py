"""The BUILT artifact carries its rules compiled (handler/Makefile `compiled-rules`), and its
handler, given a compiled rules file, starts and answers without importing pydantic or YAML
(docs/coldstart.md). See conftest.py for how the artifact is found.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tier_router.routing.compiled import SUFFIX, schema_digest

from tests.deploy.conftest import ROOT, base_env, load_event

pytestmark = pytest.mark.integration
ROUTER_KEY = "rk-deploy-compiled-0123456789"
HEAVY = ("pydantic", "pydantic_core", "yaml")


def header_of(path: Path) -> dict[str, Any]:
    head, _, _ = path.read_bytes().partition(b"\n")
    header: dict[str, Any] = json.loads(head)
    return header


def test_the_artifact_holds_each_rules_file_compiled(built_artifacts: list[Path]) -> None:
    for artifact in built_artifacts:
        for name in ("router.yaml", "local-demo.yaml"):
            compiled = artifact / "rules" / (name + SUFFIX)
            assert compiled.is_file(), compiled
            header = header_of(compiled)
            source = (ROOT / "rules" / name).read_bytes()
            assert header["source_sha256"] == hashlib.sha256(source).hexdigest(), "stale: rebuild"
            assert header["schema_sha256"] == schema_digest(), "made by other schema code: rebuild"
        assert not list((artifact / "rules").glob(f"*examples.yaml{SUFFIX}"))


def test_the_packaged_compiled_rules_start_without_pydantic_or_yaml(run_artifact: Any) -> None:
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": "rules/router.yaml",
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"deploy={ROUTER_KEY}",
    }
    report = run_artifact(env, [load_event("function_url_models.json", f"Bearer {ROUTER_KEY}")])
    assert report["invokes"][0]["result"]["statusCode"] == 200
    loaded = set(report["modules"]["artifact"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "compiled rules" not in report["stderr"]


def test_a_chat_request_with_compiled_rules_imports_neither(
    run_artifact: Any, artifact: Path, python312: str, rules_file: Path
) -> None:
    """The bench's setup: a rules file compiled by the artifact's own code, then the first
    chat request of a fresh process answered by the fake upstream."""
    subprocess.run(
        [python312, "-B", "-m", "tier_router.routing.compiled", str(rules_file)],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(artifact)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    env = {
        **base_env(),
        "TIER_ROUTER_RULES": str(rules_file),
        "TIER_ROUTER_STORE": "memory://",
        "TIER_ROUTER_API_KEYS": f"deploy={ROUTER_KEY}",
        "FAKE_OPENAI_KEY": "sk-fake-upstream-key-123456",
    }
    report = run_artifact(env, [load_event("function_url_chat_base64.json", f"Bearer {ROUTER_KEY}")])
    assert report["invokes"][0]["result"]["statusCode"] == 200
    loaded = set(report["modules"]["artifact"])
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
