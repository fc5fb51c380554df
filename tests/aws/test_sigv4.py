"""Our SigV4 signer must produce exactly botocore's Authorization header.

botocore is a dev-only dependency: imported here, never by the package.
"""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.auth
import botocore.credentials
import pytest
from botocore.awsrequest import AWSRequest
from hypothesis import given, settings
from hypothesis import strategies as st
from tier_router.aws.sigv4 import Credentials, host_from_url, sign
from tier_router.settings import Settings, environment_credentials

WHEN = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION = Credentials("ASIAEXAMPLE", "c2VjcmV0/with+symbols=", "FwoGZXIvYXdzEJr//////////session-token")


def botocore_headers(
    monkeypatch: pytest.MonkeyPatch,
    creds: Credentials,
    *,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    region: str,
    service: str,
    when: datetime,
) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when.replace(tzinfo=None))
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    signer = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(creds.access_key, creds.secret_key, creds.token), service, region
    )
    signer.add_auth(request)
    return dict(request.headers.items())


def ours(creds: Credentials, **kw: object) -> dict[str, str]:
    return sign(credentials=creds, **kw)  # type: ignore[arg-type]


CASES = [
    pytest.param(
        {
            "method": "POST",
            "url": "https://dynamodb.us-east-1.amazonaws.com/",
            "headers": {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.GetItem",
            },
            "body": b'{"TableName":"t","Key":{"pk":{"S":"k"}}}',
            "region": "us-east-1",
            "service": "dynamodb",
        },
        id="dynamodb-getitem",
    ),
    pytest.param(
        {
            "method": "POST",
            "url": "http://127.0.0.1:5000/",
            "headers": {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.UpdateItem",
            },
            "body": '{"Key":{"pk":{"S":"☃ user"}},"UpdateExpression":"ADD #n0 :v0"}'.encode(),
            "region": "eu-west-1",
            "service": "dynamodb",
        },
        id="local-endpoint-port-unicode-body",
    ),
    pytest.param(
        {
            "method": "GET",
            "url": "https://example.us-west-2.amazonaws.com/a/./b/../c//d%20e/?z=1&a=2&a=1&empty=",
            "headers": {"X-Amz-Meta": "  spaced   value  "},
            "body": b"",
            "region": "us-west-2",
            "service": "execute-api",
        },
        id="path-normalisation-sorted-query-trimmed-header",
    ),
]


@pytest.mark.parametrize("creds", [CREDS, SESSION], ids=["long-term", "session-token"])
@pytest.mark.parametrize("case", CASES)
def test_matches_botocore(monkeypatch: pytest.MonkeyPatch, creds: Credentials, case: dict) -> None:
    expected = botocore_headers(monkeypatch, creds, when=WHEN, **case)
    got = ours(creds, now=WHEN, **case)
    assert got["Authorization"] == expected["Authorization"]
    assert got["X-Amz-Date"] == expected["X-Amz-Date"] == "20240229T235958Z"
    assert got.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token") == creds.token


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=300),
    target=st.sampled_from(["GetItem", "PutItem", "UpdateItem", "BatchGetItem"]),
    region=st.sampled_from(["us-east-1", "eu-central-1", "ap-southeast-2"]),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
    token=st.none() | st.text(alphabet="abcdefABCDEF0123456789/+=", min_size=1, max_size=40),
)
def test_matches_botocore_on_random_requests(
    body: bytes, target: str, region: str, seconds: int, token: str | None
) -> None:
    creds = Credentials("AKIDRANDOM", "secret/+key", token)
    when = datetime.fromtimestamp(seconds, tz=UTC)
    case = {
        "method": "POST",
        "url": f"https://dynamodb.{region}.amazonaws.com/",
        "headers": {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{target}",
        },
        "body": body,
        "region": region,
        "service": "dynamodb",
    }
    with pytest.MonkeyPatch.context() as mp:
        expected = botocore_headers(mp, creds, when=when, **case)
    assert ours(creds, now=when, **case)["Authorization"] == expected["Authorization"]


def test_known_answer_from_aws_docs_example_key() -> None:
    """Pinned (computed by botocore 1.44) so the check survives without botocore."""
    got = sign(
        method="POST",
        url="https://dynamodb.us-east-1.amazonaws.com/",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
        },
        body=b"{}",
        credentials=CREDS,
        region="us-east-1",
        service="dynamodb",
        now=WHEN,
    )
    assert got["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240229/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
        "Signature=dbc717deffeeae916566ccace9999d5a83faa55b614d6f16a8b4a528a8168dee"
    )


def test_stale_auth_headers_from_a_previous_attempt_are_replaced() -> None:
    case = {
        "method": "POST",
        "url": "https://dynamodb.us-east-1.amazonaws.com/",
        "body": b"{}",
        "credentials": SESSION,
        "region": "us-east-1",
        "service": "dynamodb",
        "now": WHEN,
    }
    clean = sign(headers={"X-Amz-Target": "x"}, **case)  # type: ignore[arg-type]
    stale = {
        "X-Amz-Target": "x",
        "Authorization": "old",
        "X-Amz-Date": "19990101T000000Z",
        "X-Amz-Security-Token": "t0",
    }
    assert sign(headers=stale, **case) == clean  # type: ignore[arg-type]


def test_host_header_drops_default_ports() -> None:
    assert (
        host_from_url("https://dynamodb.us-east-1.amazonaws.com:443/") == "dynamodb.us-east-1.amazonaws.com"
    )
    assert host_from_url("http://127.0.0.1:80/") == "127.0.0.1"
    assert host_from_url("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert host_from_url("http://[::1]:8000/") == "[::1]:8000"


def test_credentials_from_env_and_their_repr_hides_secrets() -> None:
    assert environment_credentials({}) is None
    assert environment_credentials({"AWS_ACCESS_KEY_ID": "A"}) is None
    env = {"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok3n"}
    creds = environment_credentials(env)
    assert creds == Credentials("A", "s3cr3t", "tok3n")
    assert Settings.from_env(env).aws_credentials() == creds
    assert "s3cr3t" not in repr(creds)
    assert "tok3n" not in repr(creds)
    assert creds.redact("x s3cr3t y tok3n") == "x *** y ***"
