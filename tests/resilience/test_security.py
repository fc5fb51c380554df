"""Security properties: auth fails closed, keys compare in constant time, no SSRF, body size
limit, and no secret ever reaches logs, stdout, response bodies or headers."""

from __future__ import annotations

import hmac
import inspect
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import respx
from tier_router import router_keys
from tier_router.router_keys import KeyRing, plain_keys
from tier_router.settings import Settings

from tests.support.router_app import build_app, serve_in_thread

pytestmark = pytest.mark.anyio

DATA_ENDPOINTS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/route/explain"),
    ("POST", "/v1/feedback"),
    ("GET", "/v1/models"),
    ("GET", "/v1/router/status"),
]


def settings(**overrides) -> Settings:
    return Settings(rules_path=Path("resilience-unused.yaml"), **overrides)


# -- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), DATA_ENDPOINTS)
async def test_require_auth_without_keys_refuses_every_data_endpoint(
    method, path, make_router, upstream: respx.MockRouter, chat, router_key
) -> None:
    router = make_router(settings=settings(require_auth=True))
    for headers in ({}, {"authorization": f"Bearer {router_key}"}, {"authorization": "Bearer anything"}):
        response = await router.request(
            method, path, json=chat() if method == "POST" else None, headers=headers
        )
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"]["code"] == "no_keys_configured"
    assert not upstream.calls


async def test_require_auth_without_keys_keeps_health_but_is_not_ready(make_router) -> None:
    router = make_router(settings=settings(require_auth=True))
    assert (await router.get("/healthz")).status_code == 200
    ready = await router.get("/readyz")
    assert ready.status_code == 503
    assert any("no router keys" in p for p in ready.json()["problems"])


def test_lambda_environment_turns_auth_on_by_default() -> None:
    assert Settings.from_env({"AWS_LAMBDA_FUNCTION_NAME": "tier-router"}).require_auth is True
    assert Settings.from_env({}).require_auth is False


@pytest.mark.parametrize(("method", "path"), DATA_ENDPOINTS)
async def test_wrong_key_of_equal_length_and_prefix_is_refused(
    method, path, make_router, upstream: respx.MockRouter, chat, router_key
) -> None:
    router = make_router(settings=settings(api_keys=(f"team={router_key}",), require_auth=True))
    near = [router_key[:-1] + ("x" if router_key[-1] != "x" else "y"), router_key.upper(), router_key + " x"]
    for wrong in near:
        assert len(wrong) >= len(router_key)
        response = await router.request(
            method,
            path,
            json=chat() if method == "POST" else None,
            headers={"authorization": f"Bearer {wrong}"},
        )
        assert response.status_code == 401, (wrong, response.text)
        assert wrong not in response.text
    assert not upstream.calls


def test_keyring_compares_every_stored_hash_with_compare_digest(monkeypatch) -> None:
    assert "hmac.compare_digest" in inspect.getsource(KeyRing.match)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(router_keys.hmac, "compare_digest", spy)
    secrets = [f"trk-team{n}-{'a' * 20}{n}" for n in range(5)]
    ring = KeyRing(plain_keys([f"team{n}={s}" for n, s in enumerate(secrets)]))
    # A match on the first key, the last key and no key all compare against all 5 hashes.
    for presented, expected in ((secrets[0], "team0"), (secrets[4], "team4"), (secrets[4][:-1] + "Z", None)):
        calls.clear()
        record = ring.match(presented)
        assert (record.name if record else None) == expected
        assert len(calls) == 5
        assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in calls)


# -- SSRF ----------------------------------------------------------------------------------


SSRF_BODIES = [
    {"base_url": "http://127.0.0.1:1/v1"},
    {"api_base": "http://169.254.169.254/latest/meta-data"},
    {"url": "http://evil.test/"},
    {"endpoint": "http://evil.test/"},
    {"extra_headers": {"host": "evil.test", "x-forwarded-host": "evil.test"}},
    {"extra_body": {"base_url": "http://evil.test/"}},
    {"provider": {"base_url": "http://evil.test/"}},
    {"api_key": "sk-attacker"},
]
SSRF_HEADERS = [
    {"x-forwarded-host": "evil.test"},
    {"x-forwarded-proto": "http", "x-forwarded-port": "1"},
    {"forwarded": "host=evil.test;proto=http"},
    {"x-original-url": "http://evil.test/"},
    {"x-rewrite-url": "http://evil.test/"},
    {"x-router-base-url": "http://evil.test/"},
]


async def test_request_fields_and_headers_cannot_change_the_upstream_url(
    make_router, upstream: respx.MockRouter, urls, chat, completion, provider_keys
) -> None:
    """Only the rules file's base URLs are ever called: respx (assert_all_mocked) would fail
    any other URL, and every recorded call is checked."""
    router = make_router()
    upstream.post(urls["primary"]).respond(200, json=completion())
    upstream.post(urls["backup"]).respond(200, json=completion(model="gpt-b"))
    sent = 0
    for extra in SSRF_BODIES:
        response = await router.post("/v1/chat/completions", json=chat(**extra))
        assert response.status_code in (200, 400), (extra, response.text)
        sent += response.status_code == 200
    for headers in SSRF_HEADERS:
        response = await router.post("/v1/chat/completions", json=chat(), headers=headers)
        assert response.status_code == 200, (headers, response.text)
        sent += 1
    # A Host header pointing elsewhere: the router's routes are path-based, upstream is fixed.
    response = await router.post("/v1/chat/completions", json=chat(), headers={"host": "evil.test"})
    assert response.status_code == 200
    sent += 1
    for model in ("http://evil.test/", "https://evil.test/v1", "//evil.test", "primary@evil.test", "../evil"):
        response = await router.post("/v1/chat/completions", json=chat(model=model))
        assert response.status_code in (400, 404), (model, response.text)
    allowed = {urls["primary"], urls["backup"]}
    assert len(upstream.calls) == sent > 0
    for call in upstream.calls:
        request = call.request
        assert str(request.url) in allowed, request.url
        assert request.headers["host"] in ("primary.test", "backup.test")
        assert request.headers["authorization"] in {f"Bearer {k}" for k in provider_keys.values()}
        assert "sk-attacker" not in request.headers.get("authorization", "")
        for name in ("x-forwarded-host", "forwarded", "x-original-url", "x-router-base-url"):
            assert name not in request.headers


async def test_router_key_is_never_forwarded_upstream(
    make_router, upstream: respx.MockRouter, urls, chat, completion, router_key
) -> None:
    router = make_router(settings=settings(api_keys=(f"team={router_key}",)))
    route = upstream.post(urls["primary"]).respond(200, json=completion())
    response = await router.post(
        "/v1/chat/completions", json=chat(), headers={"authorization": f"Bearer {router_key}"}
    )
    assert response.status_code == 200
    forwarded = route.calls.last.request
    assert router_key not in str(forwarded.headers)
    assert router_key.encode() not in forwarded.content


# -- body size limit -----------------------------------------------------------------------


LIMIT = 2_000


async def test_body_over_limit_with_content_length_is_413(make_router, upstream, chat) -> None:
    router = make_router(settings=settings(max_body_bytes=LIMIT))
    response = await router.post("/v1/chat/completions", json=chat("x" * (LIMIT * 2)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not upstream.calls


async def test_body_over_limit_chunked_without_content_length_is_413(make_router, upstream, chat) -> None:
    router = make_router(settings=settings(max_body_bytes=LIMIT))
    payload = json.dumps(chat("x" * (LIMIT * 4))).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 500):
            yield payload[i : i + 500]

    response = await router.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert not upstream.calls


async def test_body_with_understated_content_length_is_still_limited(make_router, upstream, chat) -> None:
    """A lying `content-length` is not trusted: the bytes actually read are counted."""
    router = make_router(settings=settings(max_body_bytes=LIMIT))
    payload = json.dumps(chat("x" * (LIMIT * 2))).encode()
    response = await router.post(
        "/v1/chat/completions",
        content=payload,
        headers={"content-type": "application/json", "content-length": "10"},
    )
    assert response.status_code in (400, 413)
    assert not upstream.calls


@pytest.mark.integration
def test_chunked_body_over_limit_on_a_real_socket_is_413(make_app_for_socket) -> None:
    """Raw HTTP/1.1 over loopback: a chunked upload that never states its size is cut off."""
    base = make_app_for_socket(settings(max_body_bytes=LIMIT))
    host, port = base.removeprefix("http://").split(":")
    piece = b"x" * 1000
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sock.sendall(b'10\r\n{"model":"auto",\r\n')
        for _ in range(5):
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


@pytest.fixture
def make_app_for_socket(rules_dict):
    """`make(settings)` → the app served by uvicorn on 127.0.0.1 (torn down after the test)."""
    stack = ExitStack()

    def make(cfg: Settings) -> str:
        return stack.enter_context(serve_in_thread(build_app(rules_dict(), settings=cfg, keys={})))

    with stack:
        yield make


# -- secrets -------------------------------------------------------------------------------


async def test_no_secret_reaches_logs_stdout_bodies_or_headers(
    make_router, upstream: respx.MockRouter, urls, chat, provider_keys, router_key, caplog, capsys
) -> None:
    """Providers echo their keys in error bodies, headers and transport errors; every
    captured byte (all loggers at DEBUG, stdout/stderr incl. the request JSON line, every
    response body and header) is searched for the provider keys and the router key."""
    caplog.set_level(logging.DEBUG)
    a, b = provider_keys["PRIMARY_KEY"], provider_keys["BACKUP_KEY"]
    router = make_router(settings=settings(api_keys=(f"team={router_key}",), require_auth=True))
    auth = {"authorization": f"Bearer {router_key}"}

    def echo(status: int, key: str) -> httpx.Response:
        message = f"Incorrect API key provided: {key}. Authorization: Bearer {key}"
        return httpx.Response(
            status,
            json={"error": {"message": message, "type": "invalid_request_error", "code": key}},
            headers={"x-echo-key": key, "www-authenticate": f"Bearer {key}"},
        )

    responses: list[httpx.Response] = []
    # 1) every candidate fails, each echoing its key (401 then 500)
    upstream.post(urls["primary"]).mock(return_value=echo(401, a))
    upstream.post(urls["backup"]).mock(return_value=echo(500, b))
    responses.append(await router.post("/v1/chat/completions", json=chat(), headers=auth))
    # 2) a client error (400) is returned to the client: its echoed key must be redacted
    upstream.post(urls["primary"]).mock(return_value=echo(400, a))
    responses.append(await router.post("/v1/chat/completions", json=chat(), headers=auth))
    # 3) a stream whose providers fail with echoing bodies
    upstream.post(urls["primary"]).mock(return_value=echo(503, a))
    upstream.post(urls["backup"]).mock(return_value=echo(422, b))
    responses.append(await router.post("/v1/chat/completions", json=chat(stream=True), headers=auth))
    # 4) transport errors whose messages carry the key
    upstream.post(urls["primary"]).mock(side_effect=httpx.ConnectError(f"connect failed for key {a}"))
    upstream.post(urls["backup"]).mock(side_effect=httpx.ReadTimeout(f"read timed out, key={b}"))
    responses.append(await router.post("/v1/chat/completions", json=chat(), headers=auth))
    # 5) explain, models and status with the router key
    responses.append(await router.post("/v1/route/explain", json=chat(), headers=auth))
    responses.append(await router.get("/v1/models", headers=auth))
    responses.append(await router.get("/v1/router/status", headers=auth))
    # 6) a wrong key (near the real one) is not echoed either
    responses.append(
        await router.post(
            "/v1/chat/completions", json=chat(), headers={"authorization": f"Bearer {router_key}x"}
        )
    )

    assert all(r.status_code >= 400 for r in responses[:4])
    captured = capsys.readouterr()
    haystacks = {
        "stdout": captured.out,
        "stderr": captured.err,
        "logs": "\n".join(
            f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
        ),
    }
    for i, response in enumerate(responses):
        haystacks[f"response {i} body"] = response.text
        haystacks[f"response {i} headers"] = repr(list(response.headers.multi_items()))
    assert '"event":"request"' in captured.out.replace(" ", "")  # the request lines were captured
    for secret in (a, b, router_key):
        for part in (secret, secret[-16:]):  # the whole key, and its distinctive tail
            for where, text in haystacks.items():
                assert part not in text, f"{part[:8]}… leaked in {where}"
