"""Fixtures for the secrets tests: moto's SSM + Secrets Manager on 127.0.0.1, fake AWS
credentials, a fake clock, and an httpx transport that counts requests and can fail on cue.

The server reuses the serialized WSGI/ASGI bridge of tests/store/moto_server.py; it mounts
moto's `ssm` and `secretsmanager` apps and dispatches on `X-Amz-Target`.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from tests.store.moto_server import FAKE_ENV, SerializedWSGI, _ASGIOverWSGI

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ByTarget:
    """Route a JSON-protocol request to the moto app of its service (by X-Amz-Target)."""

    def __init__(self, apps: dict[str, WSGIApp]) -> None:
        self._apps = apps

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        prefix = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")[0]
        app = self._apps.get(prefix)
        if app is None:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [b'{"__type":"UnknownOperationException","message":"no such service"}']
        return app(environ, start_response)


class SecretsMoto:
    """moto's SSM and Secrets Manager on a free loopback port (uvicorn, daemon thread)."""

    def __init__(self) -> None:
        import uvicorn
        from moto.moto_server.werkzeug_app import create_backend_app

        apps = {
            "AmazonSSM": create_backend_app("ssm"),
            "secretsmanager": create_backend_app("secretsmanager"),
        }
        app = _ASGIOverWSGI(SerializedWSGI(_ByTarget(apps)))
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._clients: dict[str, Any] = {}

    def start(self) -> SecretsMoto:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("moto server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def botocore(self, service: str) -> Any:
        """A botocore client for setting up fixtures (botocore is a test-only dependency)."""
        if service not in self._clients:
            import botocore.session

            self._clients[service] = botocore.session.get_session().create_client(
                service,
                region_name=FAKE_ENV["AWS_REGION"],
                endpoint_url=self.endpoint,
                aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            )
        return self._clients[service]

    def put_parameter(self, name: str, value: str) -> None:
        self.botocore("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def delete_parameter(self, name: str) -> None:
        self.botocore("ssm").delete_parameter(Name=name)


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Wire(httpx.AsyncBaseTransport):
    """Wraps a real transport: records every request, replays scripted responses/errors first,
    and while `down` sends requests to a closed port (a real 'connection refused')."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.script: list[httpx.Response | Exception] = []
        self.down = False
        self._closed_port = closed_port()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            return step
        if self.down:
            request.url = request.url.copy_with(port=self._closed_port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def targets(self) -> list[str]:
        return [r.headers.get("x-amz-target", "") for r in self.requests]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials only; no endpoint/profile settings leak in from the host."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "TIER_ROUTER_SECRETS_SSM_PREFIX",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    return FAKE_ENV


@pytest.fixture(scope="session")
def moto() -> Iterator[SecretsMoto]:
    server = SecretsMoto().start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A fresh parameter path per test (the moto server is shared by the session)."""
    return f"/tier-router-test/{uuid.uuid4().hex[:10]}/"


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def http(wire: Wire) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=wire) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def no_sleep() -> Callable[[float], Any]:
    """Backoff sleeps that return at once (retries stay fast), recording their lengths."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sleep.slept = slept  # type: ignore[attr-defined]
    return sleep
