"""`tier-router serve`: settings from the environment plus the flags, handed to the app (the
environment is never rewritten to configure it), and the guard against serving on a network
address without router keys. uvicorn is replaced by a recorder: nothing binds a port."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from tier_router.cli import main
from tier_router.serve import worker_app
from tier_router.settings import WORKERS_ENV, Settings

DEMO = Path(__file__).parent.parent / "rules" / "local-demo.yaml"
KEY_VARS = ("TIER_ROUTER_API_KEYS", "TIER_ROUTER_KEYS_FILE", "TIER_ROUTER_KEYS_SSM")


class Uvicorn:
    """Stands in for `uvicorn.run`: records what it was asked to serve."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, app: Any, **options: Any) -> None:
        self.calls.append((app, options))

    @property
    def app(self) -> Any:
        (app, _), *_ = self.calls
        return app

    @property
    def options(self) -> dict[str, Any]:
        (_, options), *_ = self.calls
        return options


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Uvicorn:
    recorder = Uvicorn()
    monkeypatch.setattr(uvicorn, "run", recorder)
    for name in (*KEY_VARS, "TIER_ROUTER_STORE", "TIER_ROUTER_BACKGROUND_SETTLE", WORKERS_ENV):
        monkeypatch.delenv(name, raising=False)
    return recorder


def serve(*argv: str) -> int:
    return main(["serve", "--rules", str(DEMO), "--store", "memory://", *argv])


def test_a_network_address_without_keys_is_refused(
    served: Uvicorn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve("--host", "0.0.0.0") == 2
    assert "refusing to serve on 0.0.0.0 without router keys" in capsys.readouterr().err
    assert served.calls == []


@pytest.mark.parametrize(
    ("env", "argv"),
    [
        ({"TIER_ROUTER_API_KEYS": "team-a=rk-1"}, []),
        ({"TIER_ROUTER_KEYS_SSM": "/router/keys"}, []),
        ({}, ["--insecure-no-auth"]),
    ],
)
def test_a_network_address_with_keys_or_the_override_is_served(
    served: Uvicorn, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], argv: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert serve("--host", "0.0.0.0", *argv) == 0
    assert served.options["host"] == "0.0.0.0"


def test_loopback_without_keys_is_served_with_a_warning(
    served: Uvicorn, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve() == 0
    assert "WARNING: no router keys configured" in capsys.readouterr().err
    assert served.options["host"] == "127.0.0.1"


def test_the_app_gets_settings_from_the_environment_and_flags_without_touching_it(
    served: Uvicorn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIER_ROUTER_STORE", "sqlite:///not-this-one.db")
    monkeypatch.setenv("TIER_ROUTER_MAX_BODY_BYTES", "12345")
    before = dict(os.environ)
    assert serve("--port", "9999") == 0
    assert dict(os.environ) == before  # configured by argument, not by rewriting the environment

    settings: Settings = served.app.state.gateway.settings
    assert settings.rules_path == DEMO  # --rules
    assert settings.store_url == "memory://"  # --store wins over TIER_ROUTER_STORE
    assert settings.max_body_bytes == 12345  # the environment, where no flag says otherwise
    assert settings.background_settle is True  # serve's default
    assert served.options["factory"] is False
    assert served.options["workers"] == 1
    assert served.options["port"] == 9999


def test_background_settle_can_still_be_turned_off(served: Uvicorn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIER_ROUTER_BACKGROUND_SETTLE", "0")
    assert serve() == 0
    assert served.app.state.gateway.settings.background_settle is False


def test_workers_build_the_app_from_the_parents_settings(
    served: Uvicorn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIER_ROUTER_API_KEYS", "team-a=rk-1")
    before = dict(os.environ)
    assert serve("--workers", "3") == 0
    assert served.app == "tier_router.serve:worker_app"
    assert served.options["factory"] is True
    assert served.options["workers"] == 3
    added = {k: v for k, v in os.environ.items() if before.get(k) != v}
    assert list(added) == [WORKERS_ENV]  # the serialized settings, nothing else

    # What a worker process does (it inherits the environment): the same settings.
    parent = Settings.from_json(added[WORKERS_ENV])
    assert parent.rules_path == DEMO
    assert parent.store_url == "memory://"
    assert parent.api_keys == ("team-a=rk-1",)
    assert worker_app().state.gateway.settings == parent


def test_settings_survive_serialization(tmp_path: Path) -> None:
    env = {
        "TIER_ROUTER_RULES": str(DEMO),
        "TIER_ROUTER_KEYS_FILE": str(tmp_path / "keys.yaml"),
        "TIER_ROUTER_API_KEYS": "a=1,b=2",
        "TIER_ROUTER_SECRETS_SSM_PREFIX": "/p/",
        "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:1",
        "AWS_SECRET_ACCESS_KEY": "never-serialized",
    }
    settings = Settings.from_env(env, serve=True)
    text = settings.to_json()
    assert "never-serialized" not in text  # the environment itself is not part of it
    assert Settings.from_json(text, env) == settings
