"""`tier_router.aws.ssm` against moto's SSM on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import botocore.auth
import botocore.credentials
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from tier_router.aws.ssm import SSMKeySource, fetch_parameter, key_source, ssm_client
from tier_router.errors import SecretNotFound, SecretsError
from tier_router.provider_keys import KeySource
from tier_router.settings import Settings

from tests.support.clock import FakeClock
from tests.support.loopback import free_port
from tests.support.moto_server import FAKE_ENV, MotoServer

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SECRET_KEY = FAKE_ENV["AWS_SECRET_ACCESS_KEY"]
TOKEN = FAKE_ENV["AWS_SESSION_TOKEN"]


class Wire(httpx.AsyncBaseTransport):
    """Wraps a real transport: records every request, replays scripted responses/errors first,
    and while `down` sends requests to a closed port (a real 'connection refused')."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.script: list[httpx.Response | Exception] = []
        self.down = False
        self._closed_port = free_port()

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


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def http(wire: Wire) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=wire) as client:
        yield client


@pytest.fixture
def no_sleep() -> Callable[[float], Any]:
    """Backoff sleeps that return at once (retries stay fast), recording their lengths."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sleep.slept = slept  # type: ignore[attr-defined]
    return sleep


def settings_for(moto: MotoServer) -> Settings:
    """What the Lambda would have: credentials in the live environment (rotated under the
    tests' feet by monkeypatch), SSM at moto's endpoint."""
    return dataclasses.replace(Settings.from_env(), ssm_endpoint_url=moto.endpoint)


def source(
    moto: MotoServer,
    prefix: str,
    names: list[str],
    http: httpx.AsyncClient,
    clock: FakeClock,
    *,
    refresh_s: float = 300,
    retry_s: float = 5.0,
    **client_options: Any,
) -> SSMKeySource:
    client = ssm_client(settings_for(moto), http, **client_options)
    return SSMKeySource(prefix, names=names, client=client, refresh_s=refresh_s, retry_s=retry_s, clock=clock)


def ssm_calls(wire: Wire) -> int:
    return wire.targets().count("AmazonSSM.GetParameters")


def aws_error(status: int, code: str, message: str = "") -> httpx.Response:
    body = {"__type": f"com.amazonaws.ssm#{code}", "message": message}
    return httpx.Response(status, json=body, headers={"Content-Type": "application/x-amz-json-1.1"})


# --- SSMKeySource -------------------------------------------------------------------------


async def test_lazy_then_one_call_for_all_names_then_cached(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    moto.put_parameter(f"{prefix}OPENAI_API_KEY", "sk-openai-value-1")
    moto.put_parameter(f"{prefix}GROQ_API_KEY", "gsk_groqvalue1234567")
    moto.put_parameter(f"{prefix}OTHER", "third-value")
    keys = source(moto, prefix, ["OPENAI_API_KEY", "GROQ_API_KEY", "OTHER"], http, clock)

    assert wire.requests == []  # nothing at construction
    assert keys.missing(["OPENAI_API_KEY"]) == []  # nothing known yet: no cold-start warning

    assert await keys.get("OPENAI_API_KEY") == "sk-openai-value-1"
    assert ssm_calls(wire) == 1
    sent = json.loads(wire.requests[0].content)
    assert sent["WithDecryption"] is True
    wanted = ("OPENAI_API_KEY", "GROQ_API_KEY", "OTHER")
    assert sorted(sent["Names"]) == sorted(f"{prefix}{n}" for n in wanted)
    assert wire.requests[0].headers["content-type"] == "application/x-amz-json-1.1"

    assert await keys.get("GROQ_API_KEY") == "gsk_groqvalue1234567"
    assert await keys.get("OTHER") == "third-value"
    assert await keys.get("OPENAI_API_KEY") == "sk-openai-value-1"
    assert ssm_calls(wire) == 1  # all from the cache
    assert keys.missing(["OPENAI_API_KEY", "GROQ_API_KEY", "OTHER"]) == []
    assert isinstance(keys, KeySource)  # drop-in for Gateway(keys=...)


async def test_concurrent_first_gets_share_one_fetch(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    moto.put_parameter(f"{prefix}A", "value-a")
    moto.put_parameter(f"{prefix}B", "value-b")
    keys = source(moto, prefix, ["A", "B"], http, clock)
    got = await asyncio.gather(*(keys.get(n) for n in ["A", "B", "A", "B", "A"]))
    assert got == ["value-a", "value-b", "value-a", "value-b", "value-a"]
    assert ssm_calls(wire) == 1


async def test_refreshed_after_refresh_s_in_the_background(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    moto.put_parameter(f"{prefix}KEY", "old-value")
    keys = source(moto, prefix, ["KEY"], http, clock, refresh_s=300)
    assert await keys.get("KEY") == "old-value"
    moto.put_parameter(f"{prefix}KEY", "new-value")  # rotated in SSM

    clock.advance(299)
    assert await keys.get("KEY") == "old-value"
    assert ssm_calls(wire) == 1  # still fresh

    clock.advance(1)
    # Stale: answered from the cache at once, one refresh started for everybody.
    assert await asyncio.gather(keys.get("KEY"), keys.get("KEY"), keys.get("KEY")) == ["old-value"] * 3
    await keys.refresh()  # joins the refresh in flight
    assert ssm_calls(wire) == 2
    assert await keys.get("KEY") == "new-value"
    assert ssm_calls(wire) == 2


async def test_marked_stale_the_cache_is_refreshed_in_the_background_before_refresh_s(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """`mark_stale` (a SnapStart restore): served from the cache, refreshed at once, not in 300 s."""
    moto.put_parameter(f"{prefix}KEY", "old-value")
    keys = source(moto, prefix, ["KEY"], http, clock, refresh_s=300)
    assert await keys.get("KEY") == "old-value"
    moto.put_parameter(f"{prefix}KEY", "new-value")
    keys.mark_stale()
    assert await keys.get("KEY") == "old-value"  # no wait for SSM on the request's path
    await keys.refresh()  # joins the refresh the get started
    assert ssm_calls(wire) == 2
    assert await keys.get("KEY") == "new-value"


async def test_failed_refresh_keeps_serving_cached_values(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    no_sleep: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "sk-cached-secret-value")
    keys = source(moto, prefix, ["KEY"], http, clock, refresh_s=60, retry_s=5, sleep=no_sleep)
    assert await keys.get("KEY") == "sk-cached-secret-value"

    wire.down = True  # SSM unreachable: connections refused
    caplog.set_level(logging.DEBUG, logger="tier_router.aws.ssm")
    clock.advance(60)
    assert await keys.get("KEY") == "sk-cached-secret-value"
    await keys.refresh()  # the background refresh failed; a full cache is not an error
    assert keys.last_error is not None
    assert "ConnectError" in keys.last_error
    assert ssm_calls(wire) == 1 + 3  # 3 attempts
    assert keys.missing(["KEY"]) == []

    # Within retry_s: no new attempt.
    clock.advance(4)
    assert await keys.get("KEY") == "sk-cached-secret-value"
    assert ssm_calls(wire) == 4
    # After retry_s: tried again in the background, still failing, still serving.
    clock.advance(1)
    assert await keys.get("KEY") == "sk-cached-secret-value"
    await keys.refresh()
    assert ssm_calls(wire) == 7
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1  # logged once per outage
    assert "serving 1 cached keys" in warnings[0].getMessage()

    wire.down = False
    clock.advance(5)
    moto.put_parameter(f"{prefix}KEY", "sk-rotated-secret-value")
    assert await keys.get("KEY") == "sk-cached-secret-value"
    await keys.refresh()
    assert await keys.get("KEY") == "sk-rotated-secret-value"
    assert keys.last_error is None
    for text in [caplog.text, *(str(r.args) for r in caplog.records)]:
        assert "sk-cached-secret-value" not in text
        assert SECRET_KEY not in text
        assert TOKEN not in text


async def test_first_fetch_failure_returns_none_then_retries_after_backoff(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    no_sleep: Any,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "value-after-outage")
    keys = source(moto, prefix, ["KEY"], http, clock, retry_s=5, sleep=no_sleep, max_attempts=2)
    wire.down = True
    assert await keys.get("KEY") is None
    assert ssm_calls(wire) == 2
    assert keys.missing(["KEY"]) == ["KEY"]  # /readyz names it
    with pytest.raises(SecretsError, match=r"provider keys KEY unavailable: .*ConnectError"):
        await keys.refresh()  # within retry_s: reports, does not call
    assert ssm_calls(wire) == 2

    clock.advance(4.9)
    assert await keys.get("KEY") is None  # backing off: no call, no waiting
    assert ssm_calls(wire) == 2

    wire.down = False
    clock.advance(0.1)
    assert await keys.get("KEY") == "value-after-outage"
    assert ssm_calls(wire) == 3
    assert keys.missing(["KEY"]) == []
    await keys.refresh()  # fresh and complete: no call, no error
    assert ssm_calls(wire) == 3


async def test_missing_parameter_is_reported(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    moto.put_parameter(f"{prefix}PRESENT", "here")
    keys = source(moto, prefix, ["PRESENT", "ABSENT"], http, clock)
    assert keys.missing(["PRESENT", "ABSENT"]) == []
    await keys.refresh()  # what /readyz does: fetch, then ask
    assert keys.missing(["PRESENT", "ABSENT"]) == ["ABSENT"]
    assert await keys.get("ABSENT") is None
    assert await keys.get("PRESENT") == "here"
    assert ssm_calls(wire) == 1  # "does not exist" is an answer: not re-asked on every get

    # Deleted in SSM: dropped at the next refresh (an authoritative answer).
    moto.delete_parameter(f"{prefix}PRESENT")
    await keys.refresh(force=True)
    assert keys.missing(["PRESENT", "ABSENT"]) == ["ABSENT", "PRESENT"]
    assert await keys.get("PRESENT") is None


async def test_more_than_ten_names_are_chunked(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    names = [f"KEY_{i:02d}" for i in range(23)]
    for name in names[:-1]:
        moto.put_parameter(f"{prefix}{name}", f"value-{name}")
    keys = source(moto, prefix, names, http, clock)
    assert await keys.get("KEY_00") == "value-KEY_00"
    sizes = sorted(len(json.loads(r.content)["Names"]) for r in wire.requests)
    assert sizes == [3, 10, 10]  # moto refuses more than 10, as SSM does
    for name in names[:-1]:
        assert await keys.get(name) == f"value-{name}"
    assert keys.missing(names) == ["KEY_22"]
    assert ssm_calls(wire) == 3


async def test_unlisted_name_is_fetched_on_demand(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    moto.put_parameter(f"{prefix}LATE", "late-value")
    keys = source(moto, prefix, [], http, clock)
    assert await keys.get("LATE") == "late-value"
    assert await keys.get("LATE") == "late-value"
    assert ssm_calls(wire) == 1


async def test_signature_matches_botocore_and_session_token_is_sent(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "v")
    keys = source(moto, prefix, ["KEY"], http, clock)
    assert await keys.get("KEY") == "v"
    sent = wire.requests[0]
    assert sent.headers["x-amz-security-token"] == TOKEN
    assert sent.headers["x-amz-target"] == "AmazonSSM.GetParameters"

    # Re-sign the same request with botocore at the same instant: identical Authorization.
    when = datetime.strptime(sent.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    theirs = AWSRequest(
        method="POST",
        url=str(sent.url),
        headers={
            "Content-Type": sent.headers["content-type"],
            "X-Amz-Target": sent.headers["x-amz-target"],
        },
        data=sent.content,
    )
    botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(FAKE_ENV["AWS_ACCESS_KEY_ID"], SECRET_KEY, TOKEN), "ssm", "us-east-1"
    ).add_auth(theirs)
    assert sent.headers["authorization"] == theirs.headers["Authorization"]
    assert "/us-east-1/ssm/aws4_request" in sent.headers["authorization"]


async def test_credentials_are_read_on_every_call(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "v")
    keys = source(moto, prefix, ["KEY"], http, clock)
    await keys.get("KEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDROTATED")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "rotated-token")
    await keys.refresh(force=True)
    assert "Credential=AKIDTESTTESTTEST/" in wire.requests[0].headers["authorization"]
    assert "Credential=AKIDROTATED/" in wire.requests[1].headers["authorization"]
    assert wire.requests[1].headers["x-amz-security-token"] == "rotated-token"


async def test_throttling_5xx_and_transport_errors_are_retried(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    no_sleep: Any,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "eventually")
    wire.script = [
        aws_error(400, "ThrottlingException", "Rate exceeded"),
        aws_error(500, "InternalServerError"),
        httpx.ReadTimeout("timed out"),
    ]
    keys = source(moto, prefix, ["KEY"], http, clock, sleep=no_sleep, max_attempts=4)
    assert await keys.get("KEY") == "eventually"
    assert ssm_calls(wire) == 4
    assert len(no_sleep.slept) == 3
    assert all(0 <= s <= 1 for s in no_sleep.slept)


async def test_auth_errors_are_not_retried_and_never_leak_secrets(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    no_sleep: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    moto.put_parameter(f"{prefix}KEY", "sk-super-secret-provider-key")
    keys = source(moto, prefix, ["KEY"], http, clock, sleep=no_sleep, refresh_s=10)
    assert await keys.get("KEY") == "sk-super-secret-provider-key"

    # An (unlikely) error message echoing every secret we hold.
    echo = f"denied {SECRET_KEY} {TOKEN} sk-super-secret-provider-key"
    wire.script = [aws_error(400, "AccessDeniedException", echo)]
    clock.advance(10)
    await keys.get("KEY")
    await keys.refresh()
    assert ssm_calls(wire) == 2  # not retried
    error = keys.last_error or ""
    assert "refused the credentials" in error
    assert "AccessDeniedException" in error
    for text in (error, caplog.text, repr(keys)):
        assert SECRET_KEY not in text
        assert TOKEN not in text
        assert "sk-super-secret-provider-key" not in text

    wire.script = [aws_error(400, "AccessDeniedException", echo)]
    with pytest.raises(SecretsError) as raised:
        await fetch_parameter(f"{prefix}KEY", http_client=http, settings=settings_for(moto))
    assert SECRET_KEY not in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert "sk-super-secret-provider-key" not in str(raised.value)


async def test_no_credentials(
    moto: MotoServer,
    prefix: str,
    wire: Wire,
    http: httpx.AsyncClient,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    keys = source(moto, prefix, ["KEY"], http, clock)
    assert await keys.get("KEY") is None
    assert wire.requests == []
    with pytest.raises(SecretsError, match="no AWS credentials"):
        await keys.refresh(force=True)


async def test_key_source_is_chosen_by_the_settings(http: httpx.AsyncClient) -> None:
    plain = key_source(["A"], http_client=http, settings=Settings.from_env({"A": "from-env"}))
    assert type(plain) is KeySource
    assert await plain.get("A") == "from-env"
    settings = Settings.from_env({"TIER_ROUTER_SECRETS_SSM_PREFIX": "/p/", "AWS_REGION": "eu-west-1"})
    ssm = key_source(["A"], http_client=http, settings=settings)
    assert isinstance(ssm, SSMKeySource)
    assert ssm.prefix == "/p/"
    assert "https://ssm.eu-west-1.amazonaws.com/" in repr(ssm)


async def test_region_and_endpoint_come_from_the_settings(http: httpx.AsyncClient) -> None:
    def url(env: dict[str, str]) -> str:
        source = key_source([], http_client=http, settings=Settings.from_env(env))
        assert isinstance(source, SSMKeySource)
        return repr(source)

    prefix = {"TIER_ROUTER_SECRETS_SSM_PREFIX": "/p/"}
    assert "https://ssm.us-east-1.amazonaws.com/" in url({**prefix, "AWS_REGION": "us-east-1"})
    assert "https://ssm.cn-north-1.amazonaws.com.cn/" in url({**prefix, "AWS_DEFAULT_REGION": "cn-north-1"})
    assert "http://127.0.0.1:1/" in url({**prefix, "AWS_ENDPOINT_URL": "http://127.0.0.1:1"})
    assert "http://127.0.0.1:2/" in url(
        {**prefix, "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_SSM": "http://127.0.0.1:2"}
    )
    with pytest.raises(ValueError, match="region"):
        url(prefix)


# --- one-shot helpers ---------------------------------------------------------------------


async def test_fetch_parameter(moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient) -> None:
    keys_file = "keys:\n  - id: team-a\n    key: rk-abcdef\n"
    moto.put_parameter(f"{prefix}router-keys", keys_file)
    settings = settings_for(moto)
    got = await fetch_parameter(f"{prefix}router-keys", http_client=http, settings=settings)
    assert got == keys_file
    with pytest.raises(SecretNotFound, match="router-keys-nope"):
        await fetch_parameter(f"{prefix}router-keys-nope", http_client=http, settings=settings)
    assert ssm_calls(wire) == 2
    assert not http.is_closed  # a shared client stays open
    # Without a client: a temporary one.
    assert await fetch_parameter(f"{prefix}router-keys", settings=settings) == keys_file


async def test_the_redactor_learns_each_key_ssm_brings_before_it_is_used(
    moto: MotoServer, prefix: str, wire: Wire, http: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Keys fetched lazily and rotated in SSM: the gateway's redactor knows each value by the
    time `get` hands it to a request, and keeps the rotated-out one (it may still be live)."""
    from tier_router.gateway import secrets_redactor

    old, new = "sk-ssm-OLD-0123456789abcdef", "sk-ssm-NEW-fedcba9876543210"
    moto.put_parameter(f"{prefix}KEY", old)
    keys = source(moto, prefix, ["KEY"], http, clock, refresh_s=300)
    redactor = secrets_redactor(settings_for(moto), keys, ["KEY"])
    assert redactor.text(old) == old  # not fetched yet: nothing known
    assert redactor.text(f"aws {SECRET_KEY}") == "aws [redacted]"  # the AWS secret key is
    assert await keys.get("KEY") == old
    assert redactor.text(f"echo {old}") == "echo [redacted]"
    moto.put_parameter(f"{prefix}KEY", new)
    clock.advance(300)
    await keys.refresh()
    assert await keys.get("KEY") == new
    assert redactor.text(f"{old} {new}") == "[redacted] [redacted]"
