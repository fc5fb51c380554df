"""A fake AWS Lambda Invoke API on 127.0.0.1: what `tier_router.aws.invoke` talks to in tests
and in bench/bench_lambda_invoke.py.

    with FakeLambda.running() as fake:          # fake.endpoint = "http://127.0.0.1:PORT"
        ... LambdaInvoker(name, endpoint=fake.endpoint, ...) ...
        fake.calls                              # every request seen, parsed (`Call`)

It answers `POST /2015-03-31/functions/<name>/invocations` with 202 and an empty body, as
Lambda does for `X-Amz-Invocation-Type: Event`; `fake.script` holds (status, error type,
message) answers to give first. Each call's SigV4 signature is checked against botocore's
signer (an independent implementation) with the secret the test configured
(`secret_key`): `call.signature_ok` (unless `verify=False`).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from unittest import mock
from urllib.parse import unquote

import botocore.auth
import botocore.credentials
from botocore.awsrequest import AWSRequest

from tests.support.loopback import run_uvicorn_in_thread
from tests.support.moto_server import FAKE_ENV

PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations$")
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)
_BOTOCORE_CLOCK = threading.Lock()  # botocore reads the signing time from a module function


@dataclass
class Call:
    function: str  # the function name or ARN, decoded
    raw_path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    authorization: dict[str, str] = field(default_factory=dict)  # the parsed header's parts
    signature_ok: bool = False

    def event(self) -> Any:
        return json.loads(self.body)


class FakeLambda:
    def __init__(self, secret_key: str = FAKE_ENV["AWS_SECRET_ACCESS_KEY"], verify: bool = True) -> None:
        self.secret_key = secret_key
        self.verify = verify  # off: the bench times the router, not botocore
        self.calls: list[Call] = []
        self.script: list[tuple[int, str, str]] = []
        self.endpoint = ""

    @classmethod
    @contextlib.contextmanager
    def running(cls, **options: Any) -> Iterator[FakeLambda]:
        fake = cls(**options)
        with run_uvicorn_in_thread(fake, lifespan="off") as url:
            fake.endpoint = url
            yield fake

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_path = scope["raw_path"].decode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        matched = PATH.match(raw_path)
        if scope["method"] != "POST" or matched is None:
            await answer(send, 404, {"Type": "User", "message": "no such route"}, "ResourceNotFoundException")
            return
        call = Call(unquote(matched.group(1)), raw_path, headers, body)
        if self.verify:
            self.check_signature(call)
        self.calls.append(call)
        if self.script:
            status, error_type, message_text = self.script.pop(0)
            await answer(send, status, {"Type": "User", "message": message_text}, error_type)
            return
        await answer(send, 202, None, "")

    def check_signature(self, call: Call) -> None:
        parsed = AUTHORIZATION.match(call.headers.get("authorization", ""))
        if parsed is None:
            return
        call.authorization = parsed.groupdict()
        signed = parsed["signed"].split(";")
        ours = {"x-amz-date", "x-amz-security-token"}  # botocore adds these itself
        headers = {name: call.headers[name] for name in signed if name not in ours and name in call.headers}
        url = f"http://{call.headers['host']}{call.raw_path}"
        when = datetime.strptime(call.headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
        credentials = botocore.credentials.Credentials(
            parsed["key"], self.secret_key, call.headers.get("x-amz-security-token")
        )
        request = AWSRequest(method="POST", url=url, headers=headers, data=call.body)
        with _BOTOCORE_CLOCK, mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
            botocore.auth.SigV4Auth(credentials, parsed["service"], parsed["region"]).add_auth(request)
        call.signature_ok = request.headers["Authorization"] == call.headers["authorization"]


async def answer(send: Any, status: int, body: dict[str, Any] | None, error_type: str) -> None:
    content = b"" if body is None else json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if error_type:
        headers.append((b"x-amzn-errortype", error_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def main() -> None:
    """Its own process, for the bench: `python -m tests.support.fake_lambda --port 9010`
    (signatures unchecked: the bench times the router, not botocore)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="a fake AWS Lambda Invoke API (202 for every event)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        FakeLambda(verify=False), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off"
    )


if __name__ == "__main__":
    main()
