"""`tier-router serve` at start-up: one banner (the URL, the rules file, every tier with its
models, the store, the router keys), ONE no-keys warning, a warning for several workers on
an unshared memory:// store; and clean refusals (one line, no traceback, exit 2) for a bad
store URL and for a keys file naming a tier the rules do not define."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from tier_router.cli import main
from tier_router.router_keys import hash_key
from tier_router.routing.loader import load_rules
from tier_router.settings import WORKERS_ENV

from tests.support.demo import DEMO
from tests.support.router_process import running_router

KEY_VARS = ("TIER_ROUTER_API_KEYS", "TIER_ROUTER_KEYS_FILE", "TIER_ROUTER_KEYS_SSM", "TIER_ROUTER_STORE")


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """uvicorn.run replaced by a recorder: nothing binds a port."""
    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append((app, options)))
    for name in (*KEY_VARS, WORKERS_ENV):
        monkeypatch.delenv(name, raising=False)
    return calls


def test_the_real_server_prints_one_banner_with_one_no_keys_warning(tmp_path: Path) -> None:
    rules = yaml.safe_load(DEMO.read_text())
    with running_router(tmp_path, rules, key="", store_url="memory://", log_level="info") as router:
        port = router.url.rsplit(":", 1)[1]
    err = router.stderr()
    assert f"tier-router: http://127.0.0.1:{port}/v1" in err
    spec = load_rules(DEMO).spec
    counts = f"({len(spec.models)} models, {len(spec.tiers)} tiers, {len(spec.rules)} rules)"
    assert f"rules   {tmp_path / 'router.yaml'} {counts}" in err
    lines = err.splitlines()
    assert any(
        line.split()[:2] == ["tiers", "budget"] and line.endswith("small, tiny, medium") for line in lines
    )
    assert any(line.split() == ["standard", "medium,", "small", "(default)"] for line in lines)
    assert any(line.split() == ["premium", "large,", "medium"] for line in lines)
    assert "store   memory://" in err
    keyless = [line for line in lines if "router keys" in line.lower() and "keys create" not in line]
    assert keyless == [], keyless  # every mention of missing keys is in the one warning below
    (warning,) = [line for line in lines if "no router keys configured" in line]
    assert warning.startswith("WARNING: ")
    assert err.count("WARNING") == 1


def test_workers_on_a_memory_store_are_warned(
    recorded: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--rules", str(DEMO), "--store", "memory://", "--workers", "2"]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if "--workers 2" in line]
    assert warning.startswith("WARNING: ")
    assert "memory://" in warning
    assert "nothing is shared" in warning


def test_workers_on_a_shared_store_are_not_warned(
    recorded: list[Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path}/state.db"
    assert main(["serve", "--rules", str(DEMO), "--store", store, "--workers", "2"]) == 0
    assert "--workers" not in capsys.readouterr().err


def cli(
    *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("TIER_ROUTER_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tier_router.cli", *argv],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize(
    "store", ["bogus://x", "sqlite:/no-host", "dynamodb://", "dynamodb://t?colour=red", "state.db"]
)
def test_a_bad_store_url_is_one_line_and_exit_2(store: str) -> None:
    result = cli("serve", "--rules", str(DEMO), "--store", store, "--port", "1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("cannot serve: ")
    assert repr(store) in line


def test_a_bad_store_url_from_the_environment_too() -> None:
    result = cli("serve", "--rules", str(DEMO), "--port", "1", env={"TIER_ROUTER_STORE": "redis://x"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cannot serve: unknown store scheme 'redis' in 'redis://x'; valid forms: memory://, "
        "sqlite:///relative/path.db, sqlite:////absolute/path.db, "
        "dynamodb://table-name[?region=us-east-1&endpoint=http://127.0.0.1:8000]"
    )


def test_a_keys_file_naming_an_unknown_tier_is_refused_at_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        json.dumps(
            {
                "keys": [
                    {"name": "ok", "sha256": hash_key("a")},
                    {"name": "ci", "sha256": hash_key("b"), "tiers": ["budget", "fast"]},
                ]
            }
        )
    )
    result = cli(
        "serve",
        "--rules",
        str(DEMO),
        "--store",
        "memory://",
        "--port",
        "1",
        env={"TIER_ROUTER_KEYS_FILE": str(keys)},
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"refusing to serve: {keys}: router key 'ci' allows unknown tier 'fast'"
        f" (known tiers: {', '.join(load_rules(DEMO).tiers)}) in {DEMO}"
    )
