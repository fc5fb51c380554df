"""Fake AWS for tests and the bench: fake credentials, and moto's DynamoDB, SSM and Secrets
Manager on one real HTTP server on 127.0.0.1.

moto's threaded server applies concurrent UpdateItems without a lock and was seen to lose
increments (1,599 of 1,600). We serialize its WSGI apps behind one lock so that when an
integrity test fails, the bug is in OUR code, not in the emulator.

Served by uvicorn rather than werkzeug's dev server: werkzeug closes the connection after
every response and starts a thread per connection, which made the 4,000-increment
integrity test ~3x slower. Every service speaks AWS's JSON protocol, so one server serves
them all, dispatching on the `X-Amz-Target` header (no Host-based dispatch).
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tests.support.loopback import run_uvicorn_in_thread

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key-do-not-leak",
    "AWS_SESSION_TOKEN": "test-session-token",
    "AWS_REGION": "us-east-1",
}
HOST_SETTINGS = (
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "TIER_ROUTER_STORE",
    "TIER_ROUTER_DYNAMODB_ENDPOINT",
    "TIER_ROUTER_SECRETS_SSM_PREFIX",
)
"""What the host may have set that would point a test (or its child processes) at real AWS or
at another store."""

SERVICES = {"DynamoDB_20120810": "dynamodb", "AmazonSSM": "ssm", "secretsmanager": "secretsmanager"}
"""`X-Amz-Target` prefix → moto service."""

if TYPE_CHECKING:
    import pytest

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def use_fake_aws(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials only (child processes inherit them); no endpoint, profile or store
    setting leaks in from the host."""
    for name in HOST_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_ENV.items():
        monkeypatch.setenv(name, value)
    return FAKE_ENV


class SerializedWSGI:
    """Call a WSGI app one request at a time, response body included (see module doc)."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class ByTarget:
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


class ASGIOverWSGI:
    """Minimal ASGI -> WSGI bridge. Runs the (serialized, fast) app inline on the loop."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": "",
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode("ascii"),
            "SERVER_NAME": scope["server"][0],
            "SERVER_PORT": str(scope["server"][1]),
            "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin1").upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = f"HTTP_{name}"
            environ[name] = raw_value.decode("latin1")

        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started["status"], started["headers"] = int(status.split(" ", 1)[0]), headers

        chunks = self._app(environ, start_response)
        await send(
            {
                "type": "http.response.start",
                "status": started["status"],
                "headers": [(k.lower().encode(), v.encode()) for k, v in started["headers"]],
            }
        )
        await send({"type": "http.response.body", "body": b"".join(chunks)})


class MotoServer:
    """moto's DynamoDB, SSM and Secrets Manager on a free loopback port, served by uvicorn
    from a daemon thread. `start()` returns once it accepts connections."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import create_backend_app

        apps = {target: create_backend_app(service) for target, service in SERVICES.items()}
        self._app = ASGIOverWSGI(SerializedWSGI(ByTarget(apps)))
        self._running = contextlib.ExitStack()
        self._clients: dict[str, Any] = {}
        self.endpoint = ""

    def start(self) -> MotoServer:
        self.endpoint = self._running.enter_context(run_uvicorn_in_thread(self._app, lifespan="off"))
        return self

    def stop(self) -> None:
        self._running.close()

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

    def create_table(self, name: str) -> None:
        """Create a store table (pk: S, TTL on expires_at)."""
        dynamodb = self.botocore("dynamodb")
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )

    def put_parameter(self, name: str, value: str) -> None:
        self.botocore("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def delete_parameter(self, name: str) -> None:
        self.botocore("ssm").delete_parameter(Name=name)
