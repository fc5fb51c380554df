"""`settings.py` is the one reader of the environment, and what it reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tier_router.settings import DEFAULT_STORE, Settings, configured_store_url

PACKAGE = Path(__file__).parent.parent / "handler" / "tier_router"
READER = PACKAGE / "settings.py"


def environment_reads(path: Path) -> list[str]:
    """Every `os.environ` / `os.getenv` / `os.putenv` / `from os import environ` in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "environb", "getenv", "getenvb", "putenv", "unsetenv")
        ):
            found.append(f"{path.name}:{node.lineno}: os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{path.name}:{node.lineno}: from os import {a.name}" for a in node.names]
    return found


def test_settings_is_the_only_reader_of_the_environment() -> None:
    readers = {path: environment_reads(path) for path in sorted(PACKAGE.rglob("*.py"))}
    assert readers[READER]  # the scan does see reads
    others = {p.relative_to(PACKAGE).as_posix(): r for p, r in readers.items() if r and p != READER}
    assert not others, f"read the environment through tier_router.settings: {others}"


def test_from_env_reads_everything_once() -> None:
    env = {
        "TIER_ROUTER_STORE": "dynamodb://state",
        "TIER_ROUTER_SECRETS_SSM_PREFIX": "/tier-router/providers/",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:4583",
    }
    settings = Settings.from_env(env)
    assert settings.store_url == "dynamodb://state"
    assert settings.secrets_ssm_prefix == "/tier-router/providers/"
    assert settings.aws_region == "eu-west-1"
    assert settings.aws_endpoint("ssm") == "http://127.0.0.1:4583"
    assert settings.aws_endpoint("dynamodb") == "http://127.0.0.1:4566"  # the one for all services
    assert settings.environ is env
    assert Settings.from_env({"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "x"}).aws_region == "us-west-2"
    assert Settings.from_env({}).aws_endpoint("dynamodb") is None


def test_body_and_stream_bounds_are_read_and_reach_workers() -> None:
    env = {
        "TIER_ROUTER_BODY_TIMEOUT_S": "2.5",
        "TIER_ROUTER_MAX_JSON_VALUES": "1000",
        "TIER_ROUTER_MAX_JSON_DEPTH": "16",
        "TIER_ROUTER_MAX_SSE_LINE_BYTES": "65536",
    }
    settings = Settings.from_env(env)
    bounds = (settings.body_timeout_s, settings.max_json_values, settings.max_json_depth)
    assert bounds == (2.5, 1000, 16)
    assert settings.max_sse_line_bytes == 65536
    assert Settings.from_json(settings.to_json(), env) == settings  # `serve --workers N`
    defaults = Settings.from_env({})
    assert (defaults.body_timeout_s, defaults.max_json_values) == (30.0, 200_000)
    assert defaults.max_json_depth == 128
    assert defaults.max_sse_line_bytes == 4 * 1024 * 1024


def test_the_default_store_is_defined_once() -> None:
    assert Settings.from_env({}).store_url == DEFAULT_STORE
    assert configured_store_url({}) is None
    assert configured_store_url({"TIER_ROUTER_STORE": "memory://"}) == "memory://"
    sources = [p for p in PACKAGE.rglob("*.py") if ".tier-router/state.db" in p.read_text(encoding="utf-8")]
    assert sources == [READER]


def test_credentials_are_read_when_asked_so_rotation_is_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFIRST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "first-secret")
    settings = Settings.from_env()
    first = settings.aws_credentials()
    assert first is not None
    assert first.access_key == "AKIDFIRST"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDROTATED")
    rotated = settings.aws_credentials()
    assert rotated is not None
    assert rotated.access_key == "AKIDROTATED"
    assert "first-secret" not in repr(settings)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert settings.aws_credentials() is None
