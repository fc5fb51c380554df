"""Schema-driven fuzzing of the router's HTTP API (issue 7): schemathesis generates positive
and negative requests from an OpenAPI description and sends them to the ASGI app in-process
(its own ASGI client; providers faked by the `upstream` respx fixture).

The description is generated here, never written by hand: the operations are the app's own
endpoints, and the request body is the schema of the pydantic model that defines a valid chat
request (`tier_router.routing.request_model.ChatRequest`), with the model names the router
serves as its `model` examples (so that generated requests reach the providers too).

Every answer must pass schemathesis' `not_a_server_error` and the suite-wide invariants in
`conftest.check_response` (4xx or 200, OpenAI error shape, no traceback, module path or
provider key), and the app must still serve afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from starlette.routing import Route
from tier_router.app import RouterApp
from tier_router.routing.request_model import ChatRequest

from tests.support.router_app import app_settings, asgi_client, build_app
from tests.support.rules import KEYS, three_providers

from .conftest import AUTH_SETTING, ROUTER_KEY, check_response

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (dev extra) is not installed")
from schemathesis.checks import not_a_server_error  # noqa: E402

PUBLIC = frozenset({"/healthz", "/readyz"})
"""The paths served without a router key."""
PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")
"""A Starlette path parameter, `{name}` or `{name:converter}`."""


def openapi_path(path: str) -> str:
    """A Starlette route path in OpenAPI's form: `/v1/models/{model:path}` → `/v1/models/{model}`."""
    return PATH_PARAMETER.sub(r"{\1}", path)


def endpoints(app: RouterApp) -> list[Route]:
    """The app's routes, one per endpoint (`/chat/completions` is `/v1/chat/completions` again)."""
    seen: dict[Any, Route] = {}
    for route in app.routes:
        assert isinstance(route, Route), route
        seen.setdefault(route.endpoint, route)
    return list(seen.values())


def openapi(app: RouterApp) -> dict[str, Any]:
    """An OpenAPI 3.1 description of `app`: one operation per endpoint and method; every POST
    takes a `ChatRequest` body (JSON Schema 2020-12, as pydantic writes it); a router key
    (bearer) everywhere but `PUBLIC`."""
    body = ChatRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = {**body.pop("$defs", {}), "ChatRequest": body}
    body["properties"]["model"]["examples"] = [
        entry["id"] for entry in json.loads(app.gateway.models_body)["data"]
    ]
    paths: dict[str, dict[str, Any]] = {}
    for route in endpoints(app):
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()} {route.path}",
                "responses": {"default": {"description": "An answer, or an OpenAI-shaped error."}},
            }
            if method == "POST":
                content = {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}
                operation["requestBody"] = {"required": True, "content": content}
            if route.path in PUBLIC:
                operation["security"] = []
            names = PATH_PARAMETER.findall(route.path)
            if names:  # the served names as examples, so generated requests also find one
                schema = {"type": "string", "examples": body["properties"]["model"]["examples"]}
                parameters = [{"name": n, "in": "path", "required": True, "schema": schema} for n in names]
                operation["parameters"] = parameters
            paths.setdefault(openapi_path(route.path), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "tier-router", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"router_key": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"router_key": {"type": "http", "scheme": "bearer"}},
        },
    }


APP = build_app(
    three_providers(),
    settings=app_settings(api_keys=AUTH_SETTING, log_requests=False),
    keys=KEYS,
    client=httpx.AsyncClient(),
)
schema = schemathesis.openapi.from_dict(openapi(APP))
schema.app = APP
AUTH = {"Authorization": f"Bearer {ROUTER_KEY}"}


@pytest.fixture(autouse=True)
def _fake_providers(upstream: Any) -> None:
    """Every test here runs with the providers faked (the module-scoped respx mock)."""


def test_the_description_covers_every_endpoint_and_the_request_model() -> None:
    """What the fuzzer is told: every endpoint of the app, and the request model's own fields."""
    described = openapi(APP)
    operations = {(path, method.upper()) for path, ops in described["paths"].items() for method in ops}
    served = {(openapi_path(r.path), m) for r in endpoints(APP) for m in r.methods or () if m != "HEAD"}
    assert operations == served
    assert {r.endpoint for r in endpoints(APP)} == {r.endpoint for r in APP.routes if isinstance(r, Route)}
    assert ("/v1/chat/completions", "POST") in operations
    request = described["components"]["schemas"]["ChatRequest"]
    assert set(request["properties"]) == set(ChatRequest.model_fields)
    assert set(request["required"]) == {"model", "messages"}
    assert "auto" in request["properties"]["model"]["examples"]


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_never_fails_on_any_request(case: Any) -> None:
    response = case.call(headers=AUTH)
    case.validate_response(response, checks=[not_a_server_error])
    check_response(response, sent=_sent(case))


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_without_a_router_key_is_401(case: Any) -> None:
    response = case.call(headers={"Authorization": "Bearer not-the-key"})
    check_response(response, sent=_sent(case))
    if case.path in PUBLIC:
        assert response.status_code in (200, 405, 503), response.text
    else:
        assert response.status_code in (401, 404, 405), response.text  # auth comes first


def test_still_serving_after_schemathesis(upstream: Any) -> None:
    async def go() -> httpx.Response:
        async with asgi_client(APP, raise_app_exceptions=False) as client:
            return await client.post(
                "/v1/chat/completions",
                headers=AUTH,
                json={"model": "auto", "messages": [{"role": "user", "content": "still there?"}]},
            )

    response = asyncio.run(go())
    check_response(response)
    assert response.status_code == 200, response.text


def _sent(case: Any) -> bytes:
    body = getattr(case, "body", None)
    if isinstance(body, bytes):
        return body
    return repr(body).encode("utf-8", "backslashreplace") if body is not None else b""
