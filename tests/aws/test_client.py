"""`tier_router.aws.client`: endpoints, signing, the retry policy, error parsing and redaction,
on a scripted wire (httpx.MockTransport). Its users' behaviour on real servers (moto) is
tested in tests/store and tests/aws/test_ssm.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tier_router.aws.client import AWSClient, Failure, Outcome, Service
from tier_router.aws.sigv4 import Credentials

from tests.support.scripted_wire import ScriptedWire

pytestmark = pytest.mark.anyio

SERVICE = Service("dynamodb", "DynamoDB_20120810", "1.0", "DynamoDB")
SECRET = "wJalrXUtnFEMI-secret-key-do-not-leak"
TOKEN = "FwoGZXIvYXdzEJr-session-token-do-not-leak"
CREDS = Credentials("AKIDEXAMPLE", SECRET, TOKEN)


class Raised(Exception):
    """What the test's `failure` function makes of a Failure: it keeps it for inspection."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.detail())
        self.failure = failure


def error(code: str, status: int = 400, message: str = "boom", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"__type": f"com.amazonaws.x#{code}", "message": message, **extra})


class Wire(ScriptedWire):
    """A scripted AWS endpoint."""

    def client(
        self, credentials: Callable[[], Credentials | None] = lambda: CREDS, **options: Any
    ) -> AWSClient:
        return AWSClient(
            SERVICE,
            failure=Raised,
            credentials=credentials,
            endpoint="http://127.0.0.1:9",
            http_client=self.http_client(),
            sleep=self.sleep,
            **options,
        )


async def call(client: AWSClient, *, idempotent: bool = True) -> dict[str, Any]:
    return await client.call("GetItem", {"TableName": "t"}, idempotent=idempotent, subject="t")


async def failure_of(client: AWSClient, *, idempotent: bool = True) -> Failure:
    with pytest.raises(Raised) as raised:
        await call(client, idempotent=idempotent)
    return raised.value.failure


# --- the request --------------------------------------------------------------------------


async def test_one_signed_post_per_call() -> None:
    wire = Wire(httpx.Response(200, json={"Item": {}}))
    assert await call(wire.client()) == {"Item": {}}
    (request,) = wire.requests
    assert (request.method, str(request.url)) == ("POST", "http://127.0.0.1:9/")
    assert request.headers["content-type"] == "application/x-amz-json-1.0"
    assert request.headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert request.headers["x-amz-security-token"] == TOKEN
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/dynamodb/aws4_request" in request.headers["authorization"]
    assert json.loads(request.content) == {"TableName": "t"}


async def test_credentials_are_asked_for_on_every_attempt() -> None:
    issued = iter([CREDS, Credentials("AKIDROTATED", "s2")])
    wire = Wire(error("ThrottlingException"), httpx.Response(200, json={}))
    await call(wire.client(credentials=lambda: next(issued)))
    first, second = wire.requests
    assert "Credential=AKIDEXAMPLE/" in first.headers["authorization"]
    assert "Credential=AKIDROTATED/" in second.headers["authorization"]
    assert "x-amz-security-token" not in second.headers


async def test_no_credentials_sends_nothing() -> None:
    wire = Wire(httpx.Response(200, json={}))
    failure = await failure_of(wire.client(credentials=lambda: None))
    assert failure.outcome is Outcome.NO_CREDENTIALS
    assert wire.requests == []


def test_endpoint_and_region() -> None:
    def make(**kw: Any) -> AWSClient:
        return AWSClient(SERVICE, failure=Raised, credentials=lambda: CREDS, **kw)

    assert make(region="eu-west-1").url == "https://dynamodb.eu-west-1.amazonaws.com/"
    assert make(region="cn-north-1").url == "https://dynamodb.cn-north-1.amazonaws.com.cn/"
    local = make(endpoint="http://127.0.0.1:8000")
    assert (local.url, local.region) == ("http://127.0.0.1:8000/", "us-east-1")
    assert make(endpoint="http://127.0.0.1:8000/", region="eu-west-1").region == "eu-west-1"
    with pytest.raises(ValueError, match="DynamoDB needs a region"):
        make()


async def test_own_http_client_is_closed_a_shared_one_is_not() -> None:
    shared = httpx.AsyncClient()
    client = AWSClient(SERVICE, failure=Raised, credentials=lambda: CREDS, region="x", http_client=shared)
    await client.aclose()
    assert not shared.is_closed
    await shared.aclose()
    own = AWSClient(SERVICE, failure=Raised, credentials=lambda: CREDS, region="x")
    await own.aclose()  # never used: nothing was created, nothing to close


# --- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
@pytest.mark.parametrize("idempotent", [True, False])
async def test_throttling_is_retried_with_exponential_jittered_backoff(code: str, idempotent: bool) -> None:
    wire = Wire(error(code), error(code), error(code), httpx.Response(200, json={"ok": 1}))
    client = wire.client(max_attempts=4, backoff_base_s=0.1)
    assert await call(client, idempotent=idempotent) == {"ok": 1}  # refused, so never applied
    assert len(wire.requests) == 4
    assert len(wire.sleeps) == 3
    for attempt, slept in enumerate(wire.sleeps):
        assert 0 <= slept <= 0.1 * 2**attempt


async def test_backoff_is_capped_at_one_second() -> None:
    wire = Wire(httpx.Response(200, json={}))
    client = wire.client(backoff_base_s=0.5)
    for attempt in range(8):
        await client.backoff(attempt)
    assert max(wire.sleeps) <= 1.0


async def test_retries_end_as_gave_up_with_the_last_answer() -> None:
    wire = Wire(error("InternalServerError", 500), error("ThrottlingException", message="Rate exceeded"))
    failure = await failure_of(wire.client(max_attempts=3))
    assert failure.outcome is Outcome.GAVE_UP
    assert failure.attempts == 3
    assert failure.detail() == "HTTP 400 ThrottlingException: Rate exceeded"
    assert (failure.op, failure.subject) == ("GetItem", "t")
    assert len(wire.requests) == 3


@pytest.mark.parametrize(
    "answer",
    [error("InternalServerError", 500), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
async def test_ambiguous_failures_are_retried_only_when_idempotent(
    answer: httpx.Response | Exception,
) -> None:
    ok = httpx.Response(200, json={})
    wire = Wire(answer, ok)
    assert await call(wire.client(), idempotent=True) == {}
    assert len(wire.requests) == 2

    wire = Wire(answer, ok)
    failure = await failure_of(wire.client(), idempotent=False)
    assert failure.outcome is Outcome.UNKNOWN  # it may have been applied: not retried
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("syn"), error("ServiceUnavailable", 503)],
)
async def test_failures_before_the_request_ran_are_always_retried(answer: httpx.Response | Exception) -> None:
    wire = Wire(answer, httpx.Response(200, json={}))
    assert await call(wire.client(), idempotent=False) == {}
    assert len(wire.requests) == 2


async def test_transport_failures_name_the_exception() -> None:
    wire = Wire(httpx.ConnectError("connection refused"))
    failure = await failure_of(wire.client(max_attempts=2))
    assert failure.outcome is Outcome.GAVE_UP
    assert failure.status == 0
    assert failure.detail() == "ConnectError: connection refused"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "outcome", "code"),
    [
        (error("ResourceNotFoundException"), Outcome.NOT_FOUND, "ResourceNotFoundException"),
        (error("ParameterNotFound"), Outcome.NOT_FOUND, "ParameterNotFound"),
        (error("AccessDeniedException"), Outcome.AUTH, "AccessDeniedException"),
        (error("UnrecognizedClientException"), Outcome.AUTH, "UnrecognizedClientException"),
        (error("ValidationException"), Outcome.REJECTED, "ValidationException"),
        (
            error("ConditionalCheckFailedException"),
            Outcome.CONDITION_FAILED,
            "ConditionalCheckFailedException",
        ),
        (
            httpx.Response(
                400, headers={"x-amzn-errortype": "AccessDeniedException:http://internal.amazon.com/"}
            ),
            Outcome.AUTH,
            "AccessDeniedException",
        ),
    ],
)
async def test_errors_are_parsed_and_not_retried(answer: httpx.Response, outcome: Outcome, code: str) -> None:
    wire = Wire(answer)
    failure = await failure_of(wire.client())
    assert (failure.outcome, failure.code, failure.status) == (outcome, code, 400)
    assert len(wire.requests) == 1


async def test_message_spellings() -> None:
    capital = Wire(httpx.Response(400, json={"__type": "X#SomeError", "Message": "capitalised"}))
    assert (await failure_of(capital.client())).message == "capitalised"
    text = Wire(httpx.Response(400, text="<html>gateway said no</html>"))
    failure = await failure_of(text.client())
    assert (failure.code, failure.message) == ("", "<html>gateway said no</html>")


async def test_a_failed_condition_keeps_the_old_item_other_errors_keep_no_body() -> None:
    item = {"pk": {"S": "k"}, "n": {"N": "3"}}
    condition = await failure_of(Wire(error("ConditionalCheckFailedException", Item=item)).client())
    assert condition.body == {
        "__type": "com.amazonaws.x#ConditionalCheckFailedException",
        "message": "boom",
        "Item": item,
    }
    rejected = await failure_of(Wire(error("ValidationException", Item=item)).client())
    assert rejected.body is None


@pytest.mark.parametrize("body", [b"not json at all", b'["a", "list"]'])
async def test_an_answer_that_is_not_a_json_object_is_not_echoed(body: bytes) -> None:
    failure = await failure_of(Wire(httpx.Response(200, content=body)).client())
    assert failure.outcome is Outcome.BAD_RESPONSE
    assert failure.message == ""


async def test_error_text_never_carries_secrets() -> None:
    echo = f"signature for {SECRET} / {TOKEN} with sk-proj-abcdefghijklmnop failed"
    failure = await failure_of(Wire(error("InvalidSignatureException", message=echo)).client())
    assert SECRET not in failure.detail()
    assert TOKEN not in failure.detail()
    assert "sk-proj-abcdefghijklmnop" not in failure.detail()
    assert "***" in failure.message
    assert "[redacted]" in failure.message

    dropped = await failure_of(Wire(httpx.ReadError(f"reset while sending {TOKEN}")).client(max_attempts=1))
    assert TOKEN not in dropped.detail()
