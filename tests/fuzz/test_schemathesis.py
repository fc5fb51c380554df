"""Schema-driven fuzzing of the router's HTTP API (issue 7): schemathesis generates positive
and negative requests from the hand-written `openapi.yaml` and sends them to the ASGI app
in-process (its own ASGI client; providers faked by the `upstream` respx fixture).

Every answer must pass schemathesis' `not_a_server_error` and the suite-wide invariants in
`conftest.check_response` (4xx or 200, OpenAI error shape, no traceback, module path or
provider key), and the app must still serve afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (dev extra) is not installed")
from schemathesis.checks import not_a_server_error  # noqa: E402
from tier_router.app import create_app  # noqa: E402
from tier_router.provider_keys import KeySource  # noqa: E402
from tier_router.routing.loader import parse_rules  # noqa: E402
from tier_router.settings import Settings  # noqa: E402

from .conftest import AUTH_SETTING, PROVIDER_KEYS, ROUTER_KEY, RULES, check_response  # noqa: E402

UPSTREAM_CLIENT = httpx.AsyncClient()
APP = create_app(
    Settings(rules_path=Path("fuzz-unused.yaml"), api_keys=AUTH_SETTING, log_requests=False),
    rules=parse_rules(RULES, "fuzz-rules.yaml"),
    client=UPSTREAM_CLIENT,
    keys=KeySource(dict(PROVIDER_KEYS)),
)
schema = schemathesis.openapi.from_path(Path(__file__).with_name("openapi.yaml"))
schema.app = APP
AUTH = {"Authorization": f"Bearer {ROUTER_KEY}"}


@pytest.fixture(autouse=True)
def _fake_providers(upstream: Any) -> None:
    """Every test here runs with the providers faked (the module-scoped respx mock)."""


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
    if case.path in ("/healthz", "/readyz"):
        assert response.status_code in (200, 405, 503), response.text
    else:
        assert response.status_code in (401, 404, 405), response.text  # auth comes first


def test_still_serving_after_schemathesis(upstream: Any) -> None:
    transport = httpx.ASGITransport(app=APP, raise_app_exceptions=False)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.post(
                "/v1/chat/completions",
                headers=AUTH,
                json={"model": "auto", "messages": [{"role": "user", "content": "still there?"}]},
            )

    import asyncio

    response = asyncio.run(go())
    check_response(response)
    assert response.status_code == 200, response.text


def _sent(case: Any) -> bytes:
    body = getattr(case, "body", None)
    if isinstance(body, bytes):
        return body
    return repr(body).encode("utf-8", "backslashreplace") if body is not None else b""
