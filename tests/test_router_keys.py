"""Router keys: hashed keys with names, per-key limits and tiers, fail-closed deployment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.app import create_app
from tier_router.auth import KEYS_REFRESH_S, Auth
from tier_router.cli import main
from tier_router.router_keys import KeyRecord, KeyRing, KeysError, hash_key, parse_keys, plain_keys
from tier_router.settings import Settings

from tests.support.demo import unjudged_demo
from tests.support.router_app import asgi_client

DEMO = unjudged_demo()
CHAT = "/v1/chat/completions"


def body(prompt: str = "hi", model: str = "auto") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


async def call(app: Any, *requests: tuple[str, dict[str, Any], str | None]) -> list[httpx.Response]:
    responses = []
    async with asgi_client(app) as client:
        for path, payload, key in requests:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            responses.append(await client.post(path, json=payload, headers=headers))
    return responses


def keys_file(tmp_path: Path, *records: dict[str, Any]) -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text(json.dumps({"keys": list(records)}))
    return path


def test_keys_file_is_validated_with_clear_errors() -> None:
    good = {"name": "team-a", "sha256": hash_key("s")}
    assert parse_keys(json.dumps({"keys": [good]}), "k.yaml")[0].name == "team-a"
    with pytest.raises(KeysError, match=r"k.yaml: duplicate key names: team-a"):
        parse_keys(json.dumps({"keys": [good, good]}), "k.yaml")
    with pytest.raises(KeysError, match=r"k.yaml: keys.0.sha256"):
        parse_keys(json.dumps({"keys": [{"name": "x", "sha256": "not-a-hash"}]}), "k.yaml")
    with pytest.raises(KeysError, match=r"k.yaml: keys.0.secret"):
        parse_keys(json.dumps({"keys": [{**good, "secret": "plain"}]}), "k.yaml")


def test_keyring_matches_only_the_right_key() -> None:
    ring = KeyRing(
        [KeyRecord(name="a", sha256=hash_key("key-a")), KeyRecord(name="b", sha256=hash_key("key-b"))]
    )
    assert ring.match("key-b").name == "b"
    assert ring.match("key-c") is None
    assert ring.match("") is None
    assert plain_keys(["ops=s3cret"])[0].name == "ops"
    assert plain_keys(["bare-secret"])[0].name.startswith("k-")


def test_named_key_authenticates_and_only_its_name_is_logged(tmp_path: Path, capsys) -> None:
    path = keys_file(tmp_path, {"name": "team-a", "sha256": hash_key("trk-right")})
    app = create_app(Settings(rules_path=DEMO, keys_file=path))
    ok, wrong, missing = asyncio.run(
        call(app, (CHAT, body(), "trk-right"), (CHAT, body(), "trk-wrong"), (CHAT, body(), None))
    )
    assert ok.status_code == 200
    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    out = capsys.readouterr().out
    assert '"key":"team-a"' in out
    for response in (ok, wrong, missing):
        assert "trk-right" not in response.text + json.dumps(dict(response.headers))
    assert "trk-right" not in out
    assert "trk-wrong" not in out


def test_deployed_router_without_keys_refuses_everything() -> None:
    app = create_app(Settings(rules_path=DEMO, require_auth=True))
    (response,) = asyncio.run(call(app, (CHAT, body(), "anything")))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "no_keys_configured"


def test_local_router_without_keys_is_open() -> None:
    app = create_app(Settings(rules_path=DEMO))
    (response,) = asyncio.run(call(app, (CHAT, body(), None)))
    assert response.status_code == 200


def test_key_limited_to_tiers(tmp_path: Path) -> None:
    path = keys_file(tmp_path, {"name": "cheap", "sha256": hash_key("k1"), "tiers": ["budget"]})
    app = create_app(Settings(rules_path=DEMO, keys_file=path))
    named, routed = asyncio.run(
        call(app, (CHAT, body(model="premium"), "k1"), (CHAT, body("Why is the sky blue?"), "k1"))
    )
    assert named.status_code == 403
    assert named.json()["error"]["code"] == "tier_not_allowed"
    assert routed.status_code == 200  # the rules chose premium; the key moves it to budget
    assert routed.headers["x-router-rule"] == "hard-question"
    assert routed.headers["x-router-tier"] == "budget"


def test_key_daily_budget_from_the_keys_file(tmp_path: Path) -> None:
    # 0.0001 USD = 100 µ$: the premium mock's worst case (4,096 output tokens at $15/1M) does not fit.
    path = keys_file(tmp_path, {"name": "tiny", "sha256": hash_key("k2"), "daily_usd": 0.0001})
    app = create_app(Settings(rules_path=DEMO, keys_file=path))
    (response,) = asyncio.run(call(app, (CHAT, body("Why is the sky blue?"), "k2")))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["type"] == "insufficient_quota"
    assert error["code"] == "budget_exceeded"
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.usefixtures("rate_window")
def test_key_rate_limit_from_the_keys_file(tmp_path: Path) -> None:
    path = keys_file(tmp_path, {"name": "slow", "sha256": hash_key("k3"), "rpm": 2})
    app = create_app(Settings(rules_path=DEMO, keys_file=path))
    responses = asyncio.run(call(app, *[(CHAT, body(), "k3")] * 3))
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].headers["x-ratelimit-limit-requests"] == "2"
    assert "retry-after" in responses[2].headers


def test_remote_keys_load_lazily_and_a_failed_refresh_keeps_them(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def loader() -> list[KeyRecord]:
        calls.append(1)
        if len(calls) > 1:
            raise OSError("SSM unreachable")
        return [KeyRecord(name="remote", sha256=hash_key("k-remote"))]

    async def scenario() -> None:
        auth = Auth(KeyRing(), require=True, loader=loader)
        assert calls == []  # lazily: nothing read before the first request
        record = await auth.authenticate("Bearer k-remote")
        assert (record.name if record else None, calls) == ("remote", [1])
        auth._loaded_at -= KEYS_REFRESH_S  # the refresh is due, and it fails
        record = await auth.authenticate("Bearer k-remote")
        assert (record.name if record else None, len(calls)) == ("remote", 2)

    asyncio.run(scenario())
    assert "router keys could not be loaded: SSM unreachable" in caplog.text


def test_keys_create_prints_the_key_once_and_stores_its_hash(tmp_path: Path, capsys) -> None:
    path = tmp_path / "keys.yaml"
    assert main(["keys", "create", "team-b", "--file", str(path), "--rpm", "60"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("trk-")
    stored = path.read_text()
    assert secret not in stored
    (record,) = parse_keys(stored, str(path))
    assert record.sha256 == hash_key(secret)
    assert record.rpm == 60
    assert main(["keys", "create", "team-b", "--file", str(path)]) == 1  # names are unique


def test_serve_refuses_a_public_address_without_keys(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for name in ("TIER_ROUTER_API_KEYS", "TIER_ROUTER_KEYS_FILE", "TIER_ROUTER_KEYS_SSM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--rules", str(DEMO)]) == 2
    assert "--insecure-no-auth" in capsys.readouterr().err
