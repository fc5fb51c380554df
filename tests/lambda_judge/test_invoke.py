"""`tier_router.aws.invoke`: asynchronous Lambda invocations against a fake Invoke API on
127.0.0.1 that checks each request's SigV4 signature with botocore's signer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tier_router.aws.client import Outcome
from tier_router.aws.invoke import MAX_EVENT_BYTES, EventTooLarge, InvokeError, LambdaInvoker, lambda_invoker
from tier_router.quality.dispatch import LambdaDispatch, lambda_dispatch
from tier_router.settings import Settings

from tests.support.fake_lambda import FakeLambda
from tests.support.moto_server import FAKE_ENV

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

NAME = "tier-router-RouterFunction-AbC123"


@pytest.fixture
def fake(aws_env: dict[str, str]) -> Iterator[FakeLambda]:
    with FakeLambda.running() as server:
        yield server


def settings_for(fake: FakeLambda, **environ: str) -> Settings:
    env = {
        **FAKE_ENV,
        "AWS_LAMBDA_FUNCTION_NAME": NAME,
        "AWS_ENDPOINT_URL_LAMBDA": fake.endpoint,
        "TIER_ROUTER_RULES": "rules/router.yaml",
        **environ,
    }
    return Settings.from_env(env)


async def test_an_event_is_queued_signed_for_lambda(fake: FakeLambda) -> None:
    async with httpx.AsyncClient() as client:
        invoker = lambda_invoker(settings_for(fake), client, sleep=no_sleep)
        await invoker.invoke_event({"tier_router": "judge", "sample": {"request_id": "r-1", "text": "héllo"}})
    [call] = fake.calls
    assert call.function == NAME
    assert call.raw_path == f"/2015-03-31/functions/{NAME}/invocations"
    assert call.headers["x-amz-invocation-type"] == "Event"
    assert call.headers["content-type"] == "application/json"
    assert call.event() == {"tier_router": "judge", "sample": {"request_id": "r-1", "text": "héllo"}}
    auth = call.authorization
    assert auth["key"] == FAKE_ENV["AWS_ACCESS_KEY_ID"]
    assert (auth["region"], auth["service"]) == ("us-east-1", "lambda")
    # The invocation type is signed: nobody on the way can turn the call into a synchronous one.
    assert {"host", "x-amz-date", "x-amz-invocation-type", "x-amz-security-token"} <= set(
        auth["signed"].split(";")
    )
    assert call.headers["x-amz-security-token"] == FAKE_ENV["AWS_SESSION_TOKEN"]
    assert call.signature_ok  # botocore, given the same secret, computes the same signature


async def test_a_function_arn_is_percent_encoded_and_still_signed_right(fake: FakeLambda) -> None:
    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{NAME}"
    credentials = Settings.from_env(FAKE_ENV).aws_credentials
    invoker = LambdaInvoker(arn, credentials=credentials, endpoint=fake.endpoint)
    try:
        await invoker.invoke_event({"n": 1})
    finally:
        await invoker.aclose()
    [call] = fake.calls
    encoded = f"arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3A{NAME}"
    assert call.raw_path == f"/2015-03-31/functions/{encoded}/invocations"
    assert call.function == arn
    assert call.signature_ok


async def test_an_event_over_the_limit_is_refused_before_any_call(fake: FakeLambda) -> None:
    async with httpx.AsyncClient() as client:
        invoker = lambda_invoker(settings_for(fake), client)
        envelope = len(json.dumps({"x": ""}, separators=(",", ":")).encode())
        await invoker.invoke_event({"x": "a" * (MAX_EVENT_BYTES - envelope)})  # exactly the limit: sent
        with pytest.raises(EventTooLarge) as refused:
            await invoker.invoke_event({"x": "a" * (MAX_EVENT_BYTES - envelope + 1)})
    assert refused.value.size == MAX_EVENT_BYTES + 1
    assert str(MAX_EVENT_BYTES) in str(refused.value)
    assert len(fake.calls) == 1
    assert len(fake.calls[0].body) == MAX_EVENT_BYTES


async def test_throttling_is_retried_and_then_queued(fake: FakeLambda) -> None:
    fake.script = [(429, "TooManyRequestsException", "Rate exceeded")]
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    async with httpx.AsyncClient() as client:
        await lambda_invoker(settings_for(fake), client, sleep=sleep).invoke_event({"n": 1})
    assert len(fake.calls) == 2
    assert len(slept) == 1
    assert all(c.signature_ok for c in fake.calls)


async def test_throttled_on_every_attempt_gives_up(fake: FakeLambda) -> None:
    fake.script = [(429, "TooManyRequestsException", "Rate exceeded")] * 3
    async with httpx.AsyncClient() as client:
        invoker = lambda_invoker(settings_for(fake), client, max_attempts=3, sleep=no_sleep)
        with pytest.raises(InvokeError) as failed:
            await invoker.invoke_event({"n": 1})
    assert failed.value.failure is not None
    assert failed.value.failure.outcome is Outcome.GAVE_UP
    assert failed.value.failure.code == "TooManyRequestsException"
    assert "after 3 attempts" in str(failed.value)
    assert len(fake.calls) == 3


async def test_a_server_error_is_not_retried_it_may_have_been_queued(fake: FakeLambda) -> None:
    fake.script = [(500, "ServiceException", "internal")]
    async with httpx.AsyncClient() as client:
        with pytest.raises(InvokeError) as failed:
            await lambda_invoker(settings_for(fake), client, sleep=no_sleep).invoke_event({"n": 1})
    assert failed.value.failure is not None
    assert failed.value.failure.outcome is Outcome.UNKNOWN  # a retry could judge (and pay) twice
    assert len(fake.calls) == 1


async def test_a_refusal_is_typed_and_carries_no_secret(fake: FakeLambda) -> None:
    secret = FAKE_ENV["AWS_SECRET_ACCESS_KEY"]
    message = f"not authorized to perform lambda:InvokeFunction {secret}"
    fake.script = [(403, "AccessDeniedException", message)]
    async with httpx.AsyncClient() as client:
        with pytest.raises(InvokeError) as failed:
            await lambda_invoker(settings_for(fake), client).invoke_event({"n": 1})
    assert failed.value.failure is not None
    assert failed.value.failure.outcome is Outcome.AUTH
    assert failed.value.failure.status == 403
    assert "lambda:InvokeFunction" in str(failed.value)
    assert secret not in str(failed.value)
    assert len(fake.calls) == 1


async def test_no_credentials_no_call(fake: FakeLambda) -> None:
    invoker = LambdaInvoker(NAME, credentials=lambda: None, endpoint=fake.endpoint)
    with pytest.raises(InvokeError, match="no AWS credentials"):
        await invoker.invoke_event({"n": 1})
    assert fake.calls == []


def test_the_settings_say_where_judgements_go(tmp_path: Path) -> None:
    base = {**FAKE_ENV, "TIER_ROUTER_RULES": str(tmp_path / "r.yaml")}
    local = Settings.from_env(base)
    assert not local.judges_by_invocation
    on_lambda = Settings.from_env({**base, "AWS_LAMBDA_FUNCTION_NAME": NAME})
    assert on_lambda.judges_by_invocation
    assert on_lambda.lambda_function_name == NAME
    assert on_lambda.aws_endpoint("lambda") is None  # the public endpoint of the region
    everything = Settings.from_env({**base, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert everything.aws_endpoint("lambda") == "http://127.0.0.1:1"
    # The Lambda Web Adapter forwards HTTP events only: no judge events are sent to it.
    lwa = Settings.from_env({**base, "AWS_LAMBDA_FUNCTION_NAME": NAME, "TIER_ROUTER_STREAMING": "lwa"})
    assert not lwa.judges_by_invocation
    assert Settings.from_json(on_lambda.to_json(), {}) == on_lambda  # `serve --workers` keeps them


async def test_the_dispatch_exists_only_on_lambda(fake: FakeLambda) -> None:
    async with httpx.AsyncClient() as client:
        local = dataclasses.replace(settings_for(fake), lambda_function_name=None)
        assert lambda_dispatch(local, client) is None
        lwa = settings_for(fake, TIER_ROUTER_STREAMING="lwa")
        assert lambda_dispatch(lwa, client) is None
        dispatch = lambda_dispatch(settings_for(fake), client)
        assert isinstance(dispatch, LambdaDispatch)
        assert dispatch.invoker.url == f"{fake.endpoint}/2015-03-31/functions/{NAME}/invocations"


async def no_sleep(_s: float) -> None:
    return None


async def test_the_fake_does_check_signatures(aws_env: dict[str, str]) -> None:
    """The checker itself: a request signed with another secret does not verify."""
    with FakeLambda.running(secret_key="some-other-secret") as other:
        async with httpx.AsyncClient() as client:
            await lambda_invoker(settings_for(other), client).invoke_event({"n": 1})
    [call] = other.calls
    assert call.authorization["service"] == "lambda"
    assert not call.signature_ok
