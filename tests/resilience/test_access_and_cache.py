"""Issue 13, items 4 and 5: access fails closed, and the response cache answers each model
with its own answer.

- `tier-router serve` (the real command, in a subprocess) on a network address refuses to
  start when a router key source is configured but holds no key, naming the source; on
  loopback it serves (local use) and warns. On Lambda (`require_auth`) an empty source
  refuses every request with 401.
- With `temperature: 0` and the cache on, two models of one tier and the tier itself each
  get their own model's answer (`x-router-model`, the body's `model`): the cache key holds the
  candidate chain, not the tier.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tier_router.settings import Settings

from tests.support.router_app import Apps, build_app
from tests.support.router_process import base_env, free_port, start_router, tier_router_command

DEMO = Path(__file__).parents[2] / "rules" / "local-demo.yaml"
EXIT_WITHIN_S = 20.0


def serve_on_network(workdir: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """`tier-router serve --host 0.0.0.0`: (exit status, stderr); status None when it was
    still serving after EXIT_WITHIN_S (then it is stopped)."""
    command = [
        *tier_router_command(),
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(free_port()),
        "--rules",
        str(DEMO),
        "--store",
        "memory://",
    ]
    stderr_path = workdir / "serve.stderr"
    with stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=err, env=base_env(env), cwd=workdir
        )
    try:
        proc.wait(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        return None, stderr_path.read_text()
    return proc.returncode, stderr_path.read_text()


def keys_file(tmp_path: Path, body: str = "keys: []\n") -> Path:
    path = tmp_path / "keys.yaml"
    path.write_text("# every key revoked\n" + body)
    return path


# --- item 4: fail closed ------------------------------------------------------------------


@pytest.mark.parametrize("value", [",", "  ", " , ,"])
def test_serve_refuses_a_network_address_when_the_key_variable_holds_no_key(
    tmp_path: Path, value: str
) -> None:
    status, stderr = serve_on_network(tmp_path, {"TIER_ROUTER_API_KEYS": value})
    assert status == 2, stderr
    assert "refusing to serve on 0.0.0.0" in stderr
    assert "TIER_ROUTER_API_KEYS holds no keys" in stderr


def test_serve_refuses_a_network_address_when_the_keys_file_is_empty(tmp_path: Path) -> None:
    path = keys_file(tmp_path)
    status, stderr = serve_on_network(tmp_path, {"TIER_ROUTER_KEYS_FILE": str(path)})
    assert status == 2, f"served a network address with an empty keys file:\n{stderr}"
    assert f"TIER_ROUTER_KEYS_FILE ({path}) holds no keys" in stderr


def test_serve_refuses_when_every_configured_source_is_empty(tmp_path: Path) -> None:
    path = keys_file(tmp_path)
    status, stderr = serve_on_network(
        tmp_path, {"TIER_ROUTER_API_KEYS": ",", "TIER_ROUTER_KEYS_FILE": str(path)}
    )
    assert status == 2, stderr
    assert f"sources TIER_ROUTER_API_KEYS and TIER_ROUTER_KEYS_FILE ({path}) hold no keys" in stderr


def test_loopback_serves_an_empty_source_for_local_use_and_warns(tmp_path: Path) -> None:
    import yaml

    rules = yaml.safe_load(DEMO.read_text())
    path = keys_file(tmp_path)
    router = start_router(
        tmp_path / "r", rules, key="", store_url="memory://", env={"TIER_ROUTER_KEYS_FILE": str(path)}
    )
    try:
        answer = httpx.post(
            f"{router.url}/v1/chat/completions",
            json={"model": "budget", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10.0,
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 5
        while "WARNING" not in router.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"TIER_ROUTER_KEYS_FILE ({path}) holds no keys" in router.stderr()
    finally:
        router.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("source", ["variable", "file"])
async def test_lambda_with_an_empty_source_refuses_every_request(
    tmp_path: Path, apps: Apps, source: str
) -> None:
    rules: dict[str, Any] = {
        "version": 1,
        "providers": {"p": {"kind": "mock", "base_url": "mock://fast"}},
        "models": {"m": {"provider": "p", "id": "mock-m", "price": {"input": 1.0, "output": 1.0}}},
        "tiers": {"t": ["m"]},
        "default_tier": "t",
    }
    environ = {"AWS_LAMBDA_FUNCTION_NAME": "tier-router", "TIER_ROUTER_LOG_REQUESTS": "0"}
    if source == "variable":
        environ["TIER_ROUTER_API_KEYS"] = " , "
    else:
        environ["TIER_ROUTER_KEYS_FILE"] = str(keys_file(tmp_path))
    settings = dataclasses.replace(Settings.from_env(environ), store_url="memory://")
    assert settings.require_auth  # Lambda fails closed
    app = build_app(rules, settings=settings)
    client = apps.client(app)
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    for authorization in (None, "Bearer anything", "Bearer "):
        headers = {"authorization": authorization} if authorization else {}
        answer = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "no_keys_configured"


# --- item 5: the cache key holds the model ------------------------------------------------


@pytest.fixture
def two_models() -> dict[str, Any]:
    return {
        "version": 1,
        "providers": {
            "mock-fast": {"kind": "mock", "base_url": "mock://fast"},
            "mock-smart": {"kind": "mock", "base_url": "mock://smart"},
        },
        "models": {
            "cheap-model": {
                "provider": "mock-fast",
                "id": "mock-cheap",
                "price": {"input": 0.1, "output": 0.4},
            },
            "smart-model": {
                "provider": "mock-smart",
                "id": "mock-smart",
                "price": {"input": 3.0, "output": 15.0},
            },
        },
        "tiers": {"general": ["cheap-model", "smart-model"]},
        "default_tier": "general",
        "cache": {"enabled": True, "scope": "global"},
    }


@pytest.mark.anyio
async def test_each_model_of_a_tier_gets_its_own_cached_answer(
    apps: Apps, two_models: dict[str, Any]
) -> None:
    client = apps.client(build_app(two_models))
    messages = [{"role": "user", "content": "Name the capital of France."}]

    async def ask(model: str) -> httpx.Response:
        answer = await client.post(
            "/v1/chat/completions", json={"model": model, "messages": messages, "temperature": 0}
        )
        assert answer.status_code == 200, answer.text
        return answer

    served: dict[str, tuple[str, str]] = {}
    for round_ in range(2):  # the second round is served from the cache, each from its own entry
        for model, route, upstream_id in (
            ("cheap-model", "cheap-model", "mock-cheap"),
            ("smart-model", "smart-model", "mock-smart"),
            ("general", "cheap-model", "mock-cheap"),  # the tier: the chain [cheap, smart]
        ):
            answer = await ask(model)
            assert answer.headers["x-router-model"] == route, (model, round_, answer.headers)
            assert answer.json()["model"] == upstream_id, (model, round_, answer.json())
            if model != "general":  # the tier resolves to cheap-model's chain: it may share
                expected = "miss" if round_ == 0 else "hit"
                assert answer.headers.get("x-router-cache") == expected, (model, round_)
            served.setdefault(model, (route, answer.json()["choices"][0]["message"]["content"]))
            assert served[model][1] == answer.json()["choices"][0]["message"]["content"]


@pytest.mark.anyio
async def test_a_parameter_that_changes_the_answer_is_its_own_entry(
    apps: Apps, two_models: dict[str, Any]
) -> None:
    client = apps.client(build_app(two_models))
    base = {"model": "cheap-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    first = await client.post("/v1/chat/completions", json=base)
    assert first.headers.get("x-router-cache") == "miss"
    for changed in ({"max_tokens": 7}, {"seed": 3}, {"top_p": 0.5}, {"stop": ["x"]}):
        answer = await client.post("/v1/chat/completions", json={**base, **changed})
        assert answer.headers.get("x-router-cache") == "miss", changed
    transport_only = {"stream": False, "user": "someone", "metadata": {"k": "v"}}
    again = await client.post("/v1/chat/completions", json={**base, **transport_only})
    assert again.headers.get("x-router-cache") == "hit"
