"""A changed router keys file is re-read without a restart: a key created with `tier-router
keys create` works, a revoked one stops working, new limits apply. A file that no longer parses
or names an unknown tier is not taken (the previous keys stay, with a warning). The file is
looked at off the event loop, at most every `every_s` seconds (0 here)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.app import create_app
from tier_router.cli import main
from tier_router.router_keys import KeysFileWatch, hash_key
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

DEMO = unjudged_demo()
CHAT = "/v1/chat/completions"
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}


def write(path: Path, *records: dict[str, Any]) -> None:
    path.write_text(json.dumps({"keys": list(records)}))


def app_for(path: Path, every_s: float = 0.0) -> Any:
    app = create_app(Settings(rules_path=DEMO, keys_file=path))
    assert app.gateway.auth.watch is not None
    app.gateway.auth.watch.every_s = every_s
    return app


async def status(client: httpx.AsyncClient, key: str) -> int:
    response = await client.post(CHAT, json=BODY, headers={"authorization": f"Bearer {key}"})
    return response.status_code


def test_a_created_key_works_and_a_revoked_one_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.yaml"
    write(path, {"name": "a", "sha256": hash_key("trk-a")})
    app = app_for(path)

    async def scenario() -> list[int]:
        async with asgi_client(app) as client:
            seen = [await status(client, "trk-a")]
            assert main(["keys", "create", "b", "--file", str(path)]) == 0
            (new_key,) = [line for line in capsys.readouterr().out.split() if line.startswith("trk-")]
            seen.append(await status(client, new_key))
            write(path, {"name": "b", "sha256": hash_key(new_key)})  # 'a' revoked
            seen += [await status(client, "trk-a"), await status(client, new_key)]
            return seen

    assert asyncio.run(scenario()) == [200, 200, 401, 200]


@pytest.mark.usefixtures("rate_window")
def test_new_limits_apply(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    write(path, {"name": "a", "sha256": hash_key("trk-a")})
    app = app_for(path)

    async def scenario() -> list[int]:
        async with asgi_client(app) as client:
            seen = [await status(client, "trk-a")]
            write(path, {"name": "a", "sha256": hash_key("trk-a"), "rpm": 1})
            seen += [await status(client, "trk-a") for _ in range(2)]
            return seen

    assert asyncio.run(scenario()) == [200, 200, 429]


@pytest.mark.parametrize(
    "broken",
    [
        "keys: [{name: 'bad name!', sha256: x}]",
        json.dumps({"keys": [{"name": "a", "sha256": hash_key("trk-a"), "tiers": ["nope"]}]}),
    ],
)
def test_a_broken_or_unknown_tier_file_keeps_the_previous_keys(
    tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.yaml"
    write(path, {"name": "a", "sha256": hash_key("trk-a")})
    app = app_for(path)

    async def scenario() -> list[int]:
        async with asgi_client(app) as client:
            path.write_text(broken)
            return [await status(client, "trk-a"), await status(client, "trk-b")]

    assert asyncio.run(scenario()) == [200, 401]
    assert "router keys file not reloaded, the previous keys stay" in caplog.text
    assert "trk-a" not in caplog.text


def test_the_file_is_looked_at_no_more_often_than_every_s(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    write(path, {"name": "a", "sha256": hash_key("trk-a")})
    watch = KeysFileWatch(path, every_s=3600)
    write(path, {"name": "b", "sha256": hash_key("trk-b")}, {"name": "c", "sha256": hash_key("trk-c")})
    assert asyncio.run(watch.poll()) is None  # changed, but not due
    watch.every_s = 0
    records = asyncio.run(watch.poll())
    assert [r.name for r in records or []] == ["b", "c"]
    assert asyncio.run(watch.poll()) is None  # unchanged since


def test_the_check_runs_off_the_event_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.yaml"
    write(path, {"name": "a", "sha256": hash_key("trk-a")})
    watch = KeysFileWatch(path, every_s=0)
    threads = []
    real = asyncio.to_thread

    async def spy(func: Any, *args: Any) -> Any:
        threads.append(func.__name__)
        return await real(func, *args)

    monkeypatch.setattr(asyncio, "to_thread", spy)
    asyncio.run(watch.poll())
    assert threads == ["_reload"]
