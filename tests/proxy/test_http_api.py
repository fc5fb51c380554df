"""The HTTP surface: OpenAI-shaped errors with the right status for bad requests, router auth,
body limits, unknown paths/methods, /v1/models, health and readiness, and /v1/route/explain."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tier_router.settings import Settings

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert the OpenAI error shape and status; return the inner error."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    return error


# -- request validation ------------------------------------------------------------------------


async def test_bad_json_is_400(router, upstream):
    response = await router.post(
        CHAT, content=b'{"model": "auto", "messages": [', headers={"content-type": "application/json"}
    )
    error = openai_error(response, 400)
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"
    assert len(upstream.calls) == 0


async def test_invalid_utf8_is_400(router):
    response = await router.post(
        CHAT, content=b'{"model": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    error = openai_error(response, 400)
    assert error["code"] == "invalid_json"


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"auto"', b"42", b"null"])
async def test_non_object_json_is_400(payload, router):
    response = await router.post(CHAT, content=payload, headers={"content-type": "application/json"})
    error = openai_error(response, 400)
    assert error["code"] == "invalid_json"
    assert "object" in error["message"]


async def test_wrong_content_type_is_415(router, upstream, chat):
    response = await router.post(
        CHAT, content=json.dumps(chat()).encode(), headers={"content-type": "text/plain"}
    )
    error = openai_error(response, 415)
    assert error["code"] == "unsupported_media_type"
    assert "text/plain" in error["message"]
    assert len(upstream.calls) == 0


async def test_json_content_type_with_charset_is_accepted(router, upstream, urls, chat, completion):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    response = await router.post(
        CHAT, content=json.dumps(chat()).encode(), headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200


async def test_invalid_role_is_400_with_param(router, upstream):
    body = {"model": "auto", "messages": [{"role": "robot", "content": "beep"}]}
    response = await router.post(CHAT, json=body)
    error = openai_error(response, 400)
    assert error["code"] == "invalid_value"
    assert error["param"] == "messages[0].role"  # OpenAI's notation
    assert "'robot'" in error["message"]
    assert len(upstream.calls) == 0


async def test_missing_messages_is_400_with_param(router):
    response = await router.post(CHAT, json={"model": "auto"})
    error = openai_error(response, 400)
    assert error["param"] == "messages"


async def test_empty_messages_is_400(router):
    response = await router.post(CHAT, json={"model": "auto", "messages": []})
    error = openai_error(response, 400)
    assert error["param"] == "messages"


async def test_missing_model_is_400(router):
    response = await router.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}]})
    error = openai_error(response, 400)
    assert error["param"] == "model"


async def test_unknown_model_is_404_listing_valid_names(router, upstream, chat):
    response = await router.post(CHAT, json=chat(model="gpt-5-ultra"))
    error = openai_error(response, 404)
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    assert "gpt-5-ultra" in error["message"]
    for name in ("auto", "fast", "smart", "primary", "secondary", "claude", "gpt-4o"):
        assert name in error["message"]
    assert len(upstream.calls) == 0


async def test_body_over_limit_with_content_length_is_413(make_router, upstream, chat):
    router = make_router(settings=Settings(rules_path=Path("unused.yaml"), max_body_bytes=200))
    payload = json.dumps(chat("x" * 500)).encode()
    response = await router.post(CHAT, content=payload, headers={"content-type": "application/json"})
    error = openai_error(response, 413)
    assert error["code"] == "request_too_large"
    assert "200" in error["message"]
    assert len(upstream.calls) == 0


async def test_body_over_limit_without_content_length_is_413(make_router, upstream, chat):
    router = make_router(settings=Settings(rules_path=Path("unused.yaml"), max_body_bytes=200))
    payload = json.dumps(chat("x" * 500)).encode()

    async def chunked():
        for i in range(0, len(payload), 64):
            yield payload[i : i + 64]

    request = router.build_request(
        "POST", CHAT, content=chunked(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in request.headers
    response = await router.send(request)
    error = openai_error(response, 413)
    assert error["code"] == "request_too_large"
    assert len(upstream.calls) == 0


async def test_body_under_limit_is_accepted(make_router, upstream, urls, chat, completion):
    router = make_router(settings=Settings(rules_path=Path("unused.yaml"), max_body_bytes=2000))
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    response = await router.post(CHAT, json=chat("x" * 500))
    assert response.status_code == 200


# -- auth ----------------------------------------------------------------------------------------


@pytest.fixture
def authed_router(make_router):
    return make_router(settings=Settings(rules_path=Path("unused.yaml"), api_keys=("rk-1", "rk-2")))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"authorization": "Bearer rk-wrong"}, id="wrong"),
        pytest.param({"authorization": "Bearer rk-1x"}, id="prefix_match"),
        pytest.param({"authorization": "Basic rk-1"}, id="wrong_scheme"),
        pytest.param({"authorization": "Bearer "}, id="empty"),
    ],
)
async def test_bad_router_key_is_401(headers, authed_router, upstream, chat):
    response = await authed_router.post(CHAT, json=chat(), headers=headers)
    error = openai_error(response, 401)
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "authentication_error"
    assert len(upstream.calls) == 0


async def test_auth_runs_before_body_parsing(authed_router):
    response = await authed_router.post(
        CHAT, content=b"not json", headers={"content-type": "application/json"}
    )
    openai_error(response, 401)


@pytest.mark.parametrize("key", ["rk-1", "rk-2"])
async def test_right_router_key_is_200_and_not_forwarded(
    key, authed_router, upstream, urls, chat, completion, keys
):
    route = upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion()))
    response = await authed_router.post(CHAT, json=chat(), headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {keys['OPENAI_KEY']}"
    assert key.encode() not in sent.content
    assert all(key not in value for value in sent.headers.values())


async def test_auth_guards_models_and_explain(authed_router, chat):
    assert (await authed_router.get("/v1/models")).status_code == 401
    assert (await authed_router.post("/v1/route/explain", json=chat())).status_code == 401
    ok = await authed_router.get("/v1/models", headers={"authorization": "Bearer rk-2"})
    assert ok.status_code == 200


async def test_health_endpoints_need_no_key(authed_router):
    assert (await authed_router.get("/healthz")).status_code == 200
    assert (await authed_router.get("/readyz")).status_code == 200


# -- unknown paths and methods -------------------------------------------------------------------


async def test_unknown_path_is_openai_shaped_404(router):
    response = await router.get("/v1/nope")
    error = openai_error(response, 404)
    assert "/v1/nope" in error["message"]


async def test_unknown_post_path_is_openai_shaped_404(router, chat):
    response = await router.post("/v1/completions", json=chat())
    openai_error(response, 404)


@pytest.mark.parametrize(("method", "path"), [("GET", CHAT), ("PUT", CHAT), ("POST", "/v1/models")])
async def test_wrong_method_is_openai_shaped_405(method, path, router):
    response = await router.request(method, path)
    error = openai_error(response, 405)
    assert method in error["message"]


# -- models, health, readiness -------------------------------------------------------------------


async def test_models_lists_auto_tiers_models_and_aliases(router):
    response = await router.get("/v1/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    ids = [entry["id"] for entry in body["data"]]
    assert set(ids) == {"auto", "fast", "smart", "claude-only", "primary", "secondary", "claude", "gpt-4o"}
    assert len(ids) == len(set(ids))
    assert ids[0] == "auto"
    assert all(entry["object"] == "model" for entry in body["data"])
    assert all(set(entry) >= {"id", "object", "created", "owned_by"} for entry in body["data"])


async def test_healthz(router, upstream):
    response = await router.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert len(upstream.calls) == 0


async def test_readyz_ok_when_every_key_is_set(router):
    response = await router.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["problems"] == []


async def test_readyz_503_names_missing_key(make_router, keys):
    del keys["ANTHROPIC_KEY"]
    response = await make_router(keys=keys).get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert any("ANTHROPIC_KEY" in problem for problem in body["problems"])
    assert not any("OPENAI_KEY" in problem for problem in body["problems"])
    assert all(value not in response.text for value in keys.values())


async def test_readyz_treats_empty_key_as_missing(make_router, keys):
    keys["OPENAI_KEY"] = ""
    response = await make_router(keys=keys).get("/readyz")
    assert response.status_code == 503
    assert "OPENAI_KEY" in response.text


# -- explain --------------------------------------------------------------------------------------


async def test_explain_reports_decision_and_calls_no_provider(router, upstream, chat):
    upstream.route(host="openai.test").respond(500)
    upstream.route(host="backup.test").respond(500)
    upstream.route(host="anthropic.test").respond(500)

    response = await router.post("/v1/route/explain", json=chat("Please PROVE that 2+2=4"))

    assert response.status_code == 200
    body = response.json()
    assert body["tier"] == "smart"
    assert body["rule"] == "needs-thinking"
    assert body["requested_model"] == "auto"
    assert [link["model"] for link in body["chain"]] == ["claude", "secondary"]
    assert body["chain"][0]["provider_model_id"] == "claude-test-1"
    assert body["chain"][0]["provider_kind"] == "anthropic"
    assert isinstance(body["features"], dict)
    assert body["features"]
    assert response.headers["x-router-tier"] == "smart"
    assert response.headers["x-router-rule"] == "needs-thinking"
    assert len(upstream.calls) == 0


async def test_explain_default_and_explicit(router, upstream, chat):
    default = (await router.post("/v1/route/explain", json=chat("hello"))).json()
    assert (default["tier"], default["rule"]) == ("fast", "default")
    assert [link["model"] for link in default["chain"]] == ["primary", "secondary"]

    explicit = (await router.post("/v1/route/explain", json=chat("hello", model="secondary"))).json()
    assert explicit["rule"] == "explicit"
    assert [link["model"] for link in explicit["chain"]] == ["secondary", "primary"]
    assert len(upstream.calls) == 0


async def test_explain_validates_like_chat(router):
    response = await router.post(
        "/v1/route/explain", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    openai_error(response, 404)


# -- the official OpenAI SDK against the router -----------------------------------------------------


@pytest.fixture
async def sdk(make_app):
    """`sdk(**make_app_options)` → an `openai.AsyncOpenAI` talking to a new app in-process.

    The SDK may ship its own httpx fork; its transport class is taken from the SDK's client."""
    client_class = next(c for c in openai.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    http = importlib.import_module(client_class.__module__.split(".")[0])
    opened = []

    def build(**options):
        client = openai.AsyncOpenAI(
            api_key="rk-1",
            base_url="http://router/v1",
            max_retries=0,
            http_client=http.AsyncClient(transport=http.ASGITransport(app=make_app(**options))),
        )
        opened.append(client)
        return client

    yield build
    for client in opened:
        await client.close()


async def test_sdk_completion_and_router_auth(sdk, upstream, urls, completion):
    upstream.post(urls["openai"]).mock(return_value=httpx.Response(200, json=completion("hi from sdk")))
    client = sdk(settings=Settings(rules_path=Path("unused.yaml"), api_keys=("rk-1",)))

    result = await client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], extra_body={"foo_custom": {"x": 1}}
    )

    assert result.choices[0].message.content == "hi from sdk"
    assert result.model == "gpt-a-2025-06-01"
    assert json.loads(upstream.calls.last.request.content)["foo_custom"] == {"x": 1}


async def test_sdk_stream(sdk, upstream, urls, openai_chunks, sse, sse_response):
    upstream.post(urls["openai"]).mock(return_value=sse_response(sse(openai_chunks(["a", "b", "c"]))))
    client = sdk()

    stream = await client.chat.completions.create(
        model="fast",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abc"
    assert chunks[-1].usage.total_tokens == 7


async def test_sdk_maps_router_errors_to_exception_classes(sdk, upstream, urls):
    client = sdk()
    with pytest.raises(openai.NotFoundError) as not_found:
        await client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert not_found.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="auto", messages=[{"role": "robot", "content": "hi"}])
    assert bad.value.param == "messages[0].role"

    upstream.post(urls["openai"]).mock(return_value=httpx.Response(429, headers={"retry-after": "9"}))
    upstream.post(urls["backup"]).mock(return_value=httpx.Response(429, headers={"retry-after": "4"}))
    with pytest.raises(openai.RateLimitError) as limited:
        await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["retry-after"] == "4"

    denied = sdk(settings=Settings(rules_path=Path("unused.yaml"), api_keys=("rk-other",)))
    with pytest.raises(openai.AuthenticationError):
        await denied.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])


# -- the chat shortcut past Starlette's layers -----------------------------------------------------


async def test_an_unexpected_error_in_chat_is_a_logged_openai_shaped_500(make_app, chat, upstream, caplog):
    app = make_app()

    async def broken(decision, body, **_):
        raise RuntimeError("bug in the router")

    app.gateway.forwarder.complete = broken
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        response = await client.post(CHAT, json=chat())
    error = openai_error(response, 500)
    assert "bug in the router" not in error["message"]  # internals stay in the log
    assert any("bug in the router" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_chat_is_served_below_a_root_path(make_app, chat, upstream, urls, completion):
    """Mounted under a prefix (API Gateway stage, a reverse proxy), chat and the rest are served."""
    upstream.post(urls["openai"]).respond(200, json=completion())
    transport = httpx.ASGITransport(app=make_app(), root_path="/gateway")
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        response = await client.post("/gateway" + CHAT, json=chat())
        other = await client.get("/gateway/v1/models")
    assert response.status_code == 200, response.text
    assert response.headers["x-router-model"] == "primary"
    assert other.status_code == 200


async def test_a_client_gone_while_sending_its_body_gets_no_answer_and_logs_no_error(make_app, caplog):
    app = make_app()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CHAT,
        "raw_path": CHAT.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    assert sent == []
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_added_middleware_sees_chat_requests_too(make_app, chat, upstream, urls, completion):
    """The shortcut must not bypass middleware an operator adds (CORS, tracing...)."""
    upstream.post(urls["openai"]).respond(200, json=completion())
    app = make_app()
    seen: list[str] = []

    class Tracing:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["path"])
            await self.inner(scope, receive, send)

    app.add_middleware(Tracing)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        response = await client.post(CHAT, json=chat())
    assert response.status_code == 200, response.text
    assert response.headers["x-router-model"] == "primary"
    assert seen == [CHAT]
