"""A real DynamoDB-compatible HTTP server on 127.0.0.1 (moto), for tests and the bench.

moto's threaded server applies concurrent UpdateItems without a lock and was seen to lose
increments (1,599 of 1,600). We serialize its WSGI app behind one lock so that when an
integrity test fails, the bug is in OUR code, not in the emulator.

Served by uvicorn rather than werkzeug's dev server: werkzeug closes the connection after
every response and starts a thread per connection, which made the 4,000-increment
integrity test ~3x slower. Only moto's DynamoDB app is mounted (no Host-based dispatch).
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDTESTTESTTEST",
    "AWS_SECRET_ACCESS_KEY": "test-secret-key-do-not-leak",
    "AWS_SESSION_TOKEN": "test-session-token",
    "AWS_REGION": "us-east-1",
}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerializedWSGI:
    """Call a WSGI app one request at a time, response body included (see module doc)."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class _ASGIOverWSGI:
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
    """moto's DynamoDB on a free loopback port, served by uvicorn from a daemon thread."""

    def __init__(self) -> None:
        import uvicorn
        from moto.moto_server.werkzeug_app import create_backend_app

        app = _ASGIOverWSGI(SerializedWSGI(create_backend_app("dynamodb")))
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._botocore: Any = None

    def start(self) -> MotoServer:
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

    def create_table(self, name: str) -> None:
        """Create a store table (pk: S, TTL on expires_at) with botocore — test-only dependency."""
        if self._botocore is None:
            import botocore.session

            self._botocore = botocore.session.get_session().create_client(
                "dynamodb",
                region_name=FAKE_ENV["AWS_REGION"],
                endpoint_url=self.endpoint,
                aws_access_key_id=FAKE_ENV["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
            )
        self._botocore.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self._botocore.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
        )
