"""The health probe (issue 14): `tier-router probe` and the scheduled Lambda event check every
provider once — fake providers on 127.0.0.1, one dead port — print a table, exit 0 only when
all are healthy, and record each result on the breakers in the shared store: a success closes
an open breaker, a failure counts like a request's."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from tier_router.breakers import BreakerBoard, BreakerConfig, BreakerView
from tier_router.cli import main
from tier_router.store.sqlite import SQLiteStore

from tests.support.fake_upstream import FakeUpstream, make_fake_upstream
from tests.support.loopback import free_port, run_uvicorn_in_thread

pytestmark = pytest.mark.integration

KEY_ENV, KEY = "PROBE_TEST_KEY", "sk-probe-test-SECRET-abcdef123456"
EVENTS = Path(__file__).parent / "lambda_events"
PRICE = {"input": 1.0, "output": 2.0}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, tuple[FakeUpstream, str]]]:
    """Three live fakes on 127.0.0.1: OpenAI-style `up` and `chat`, Anthropic `claude`."""
    with contextlib.ExitStack() as stack:
        made = {
            "up": make_fake_upstream("openai", name="up"),
            "chat": make_fake_upstream("openai", name="chat"),
            "claude": make_fake_upstream("anthropic", name="claude"),
        }
        yield {name: (app, stack.enter_context(run_uvicorn_in_thread(app))) for name, app in made.items()}


@pytest.fixture(autouse=True)
def _reset(fakes: dict[str, tuple[FakeUpstream, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    for app, _ in fakes.values():
        app.reset()
    monkeypatch.setenv(KEY_ENV, KEY)


def write_rules(tmp_path: Path, fakes: dict[str, tuple[FakeUpstream, str]], *, dead: bool) -> Path:
    def provider(url: str, kind: str = "openai", **extra: Any) -> dict[str, Any]:
        return {"kind": kind, "base_url": url, "api_key_env": KEY_ENV, **extra}

    providers = {
        "up": provider(fakes["up"][1] + "/v1"),
        "chat": provider(fakes["chat"][1] + "/v1", probe={"model": "chat-small"}),
        "claude": provider(fakes["claude"][1], kind="anthropic"),
        "off": provider("http://127.0.0.1:9/v1", probe={"enabled": False}),
    }
    if dead:
        providers["dead"] = provider(f"http://127.0.0.1:{free_port()}/v1", probe={"timeout_s": 2})
    rules = {
        "version": 1,
        "providers": providers,
        "models": {
            f"{name}-small": {"provider": name, "id": f"{name}-1", "price": PRICE} for name in providers
        },
        "tiers": {"main": [f"{name}-small" for name in providers]},
        "default_tier": "main",
        "breakers": {"failure_threshold": 1},  # one failed probe opens a breaker: visible at once
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    return path


def breakers(db: Path, *keys: str) -> dict[str, BreakerView]:
    async def read() -> dict[str, BreakerView]:
        store = SQLiteStore(db)
        try:
            return await BreakerBoard(store, BreakerConfig(cache_ttl_s=0)).snapshot(list(keys))
        finally:
            await store.aclose()

    return asyncio.run(read())


def open_breaker(db: Path, key: str) -> None:
    async def fail() -> None:
        store = SQLiteStore(db)
        board = BreakerBoard(store, BreakerConfig(failure_threshold=1, recovery_s=600, recovery_max_s=600))
        await board.record_failure(key, (await board.snapshot([key]))[key])
        await store.aclose()

    asyncio.run(fail())


def test_all_healthy_exits_0_and_closes_an_open_breaker(tmp_path: Path, fakes, capsys) -> None:
    rules, db = write_rules(tmp_path, fakes, dead=False), tmp_path / "state.db"
    open_breaker(db, "provider:up")  # opened by requests, for the next 10 minutes
    open_breaker(db, "model:chat-small")
    assert breakers(db, "provider:up")["provider:up"].state == "open"

    assert main(["probe", "--rules", str(rules), "--store", f"sqlite:///{db}"]) == 0
    table = capsys.readouterr().out
    assert "4 of 4 providers healthy" in table
    assert KEY not in table

    states = breakers(db, "provider:up", "model:chat-small", "provider:chat", "provider:claude")
    assert {key: view.state for key, view in states.items()} == dict.fromkeys(states, "closed")
    up, chat, claude = fakes["up"][0], fakes["chat"][0], fakes["claude"][0]
    assert (up.model_lists, up.stats()["requests"]) == (1, 0)  # GET /models, no completion
    assert (claude.model_lists, claude.stats()["requests"]) == (1, 0)
    assert (chat.model_lists, chat.stats()["requests"]) == (0, 1)  # probe: {model: ...}
    sent = chat.stats()["last_request"]
    assert (sent["body"]["model"], sent["body"]["max_tokens"]) == ("chat-1", 1)
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"


def test_a_dead_or_failing_provider_exits_1_and_counts_against_its_breaker(
    tmp_path: Path, fakes, capsys
) -> None:
    rules, db = write_rules(tmp_path, fakes, dead=True), tmp_path / "state.db"
    fakes["up"][0].configure({"mode": "status", "status": 503})

    assert main(["probe", "--rules", str(rules), "--store", f"sqlite:///{db}", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    by_name = {p["provider"]: p for p in report["providers"]}
    assert report["healthy"] is False
    assert (by_name["dead"]["outcome"], by_name["dead"]["breaker"]) == ("connect_error", "open")
    assert (by_name["up"]["outcome"], by_name["up"]["breaker"]) == ("http_503", "open")
    assert (by_name["claude"]["outcome"], by_name["claude"]["healthy"]) == ("ok", True)
    assert (by_name["off"]["outcome"], by_name["off"]["check"]) == ("skipped", "skipped: probe disabled")
    assert KEY not in json.dumps(report)
    states = breakers(db, "provider:dead", "provider:up", "provider:claude")
    assert {k: v.state for k, v in states.items()} == {
        "provider:dead": "open",
        "provider:up": "open",
        "provider:claude": "closed",
    }

    fakes["up"][0].configure({"mode": "ok"})  # `up` is back: the next probe closes its breaker
    assert main(["probe", "--rules", str(rules), "--store", f"sqlite:///{db}"]) == 1  # dead still dead
    table = capsys.readouterr().out
    assert "connect_error" in table
    assert "4 of 5 providers healthy" in table
    assert breakers(db, "provider:up")["provider:up"].state == "closed"


def test_an_eventbridge_schedule_runs_the_probe_on_lambda(
    tmp_path: Path, fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules, db = write_rules(tmp_path, fakes, dead=True), tmp_path / "state.db"
    open_breaker(db, "provider:claude")
    monkeypatch.setenv("TIER_ROUTER_RULES", str(rules))
    monkeypatch.setenv("TIER_ROUTER_STORE", f"sqlite:///{db}")
    for name in ("tier_router.lambda_entry", "tier_router.asgi"):
        sys.modules.pop(name, None)
    handler = importlib.import_module("tier_router.lambda_entry").lambda_handler
    context = SimpleNamespace(aws_request_id="r-1", function_name="tier-router")

    result = handler(json.loads((EVENTS / "eventbridge_scheduled.json").read_text()), context)
    assert result["healthy"] is False
    by_name = {p["provider"]: p for p in result["providers"]}
    assert by_name["dead"]["outcome"] == "connect_error"
    assert by_name["claude"]["breaker"] == "closed"  # the open breaker, closed by its probe
    assert fakes["up"][0].model_lists == 1

    manual = handler({"tier_router": "probe"}, context)  # `aws lambda invoke` by hand
    assert {p["provider"] for p in manual["providers"]} == set(by_name)
    assert fakes["up"][0].model_lists == 2
    # (Read only now: asyncio.run would unset the event loop Mangum's handler runs on.)
    states = breakers(db, "provider:dead", "provider:claude")
    assert {k: v.state for k, v in states.items()} == {"provider:dead": "open", "provider:claude": "closed"}


def test_a_probe_model_must_belong_to_its_provider(tmp_path: Path, fakes, capsys) -> None:
    rules = write_rules(tmp_path, fakes, dead=False)
    doc = yaml.safe_load(rules.read_text())
    doc["providers"]["up"]["probe"] = {"model": "chat-small"}  # a model of another provider
    rules.write_text(yaml.safe_dump(doc))
    assert main(["probe", "--rules", str(rules), "--store", "memory://"]) == 1
    err = capsys.readouterr().err
    assert "provider 'up': probe.model: 'chat-small' is not a model of this provider" in err
    assert fakes["up"][0].model_lists == 0  # nothing was probed
