"""A deployed-mode router reads its router keys and provider keys from SSM (moto), lazily."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
import respx
from tier_router.app import create_app
from tier_router.router_keys import hash_key
from tier_router.routing.loader import parse_rules
from tier_router.settings import Settings

from tests.support.moto_server import MotoServer
from tests.support.router_app import asgi_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RULES = {
    "providers": {"up": {"kind": "openai", "base_url": "https://upstream.test/v1", "api_key_env": "UP_KEY"}},
    "models": {"m": {"provider": "up", "id": "m-1", "price": {"input": 1, "output": 2}}},
    "tiers": {"t": ["m"]},
    "default_tier": "t",
}
COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


async def test_router_and_provider_keys_come_from_ssm(
    moto: MotoServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_param = f"{prefix}router-keys"
    moto.put_parameter(keys_param, json.dumps({"keys": [{"name": "team-a", "sha256": hash_key("trk-a")}]}))
    moto.put_parameter(f"{prefix}providers/UP_KEY", "sk-upstream-secret-1")
    monkeypatch.setenv("TIER_ROUTER_SECRETS_SSM_PREFIX", f"{prefix}providers/")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", moto.endpoint)
    # What the Lambda has: everything from the environment (old and new call shapes agree).
    settings = dataclasses.replace(
        Settings.from_env(), store_url="memory://", keys_ssm=keys_param, require_auth=True
    )
    app = create_app(settings, rules=parse_rules(RULES))

    with respx.mock(assert_all_mocked=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        upstream = mock.post("https://upstream.test/v1/chat/completions").mock(
            return_value=httpx.Response(200, json=COMPLETION)
        )
        async with asgi_client(app) as client:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}
            denied = await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"}
            )
            ok = await client.post(
                "/v1/chat/completions", json=body, headers={"authorization": "Bearer trk-a"}
            )
            ready = await client.get("/readyz")

    assert denied.status_code == 401
    assert ok.status_code == 200, ok.text
    assert upstream.calls.last.request.headers["authorization"] == "Bearer sk-upstream-secret-1"
    assert ready.status_code == 200, ready.text
    assert "sk-upstream-secret-1" not in ok.text + ready.text
