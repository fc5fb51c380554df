"""The DynamoDB store on the wire: request shape, retries, error mapping, secrets hygiene.

Failures that moto cannot produce on demand (throttling, 5xx, dropped connections,
unprocessed keys) are injected with an httpx.MockTransport; the happy paths run against
moto in the contract suite.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tier_router.store.base import StoreError, StoreUnavailable
from tier_router.store.dynamodb import DynamoDBStore

from tests.support.scripted_wire import ScriptedWire

pytestmark = pytest.mark.anyio


def _error(code: str, status: int = 400, message: str = "boom", **extra: Any) -> httpx.Response:
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **extra}
    return httpx.Response(status, json=body)


class Recorder(ScriptedWire):
    """A scripted DynamoDB."""

    def store(self, **kwargs: Any) -> DynamoDBStore:
        return DynamoDBStore(
            "budgets",
            endpoint="http://127.0.0.1:9",
            http_client=self.http_client(),
            sleep=self.sleep,
            **kwargs,
        )


async def test_request_shape_signing_and_marshalling() -> None:
    rec = Recorder(httpx.Response(200, json={"Attributes": {"spent": {"N": "42"}}}))
    store = rec.store()
    assert await store.add("user:1", {"spent": 42}, expires_at=1_900_000_000.5) == {"spent": 42}

    (request,) = rec.requests
    assert request.method == "POST"
    assert str(request.url) == "http://127.0.0.1:9/"
    assert request.headers["x-amz-target"] == "DynamoDB_20120810.UpdateItem"
    assert request.headers["content-type"] == "application/x-amz-json-1.0"
    assert request.headers["x-amz-security-token"] == "test-session-token"
    auth = request.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTTESTTEST/")
    assert "/us-east-1/dynamodb/aws4_request" in auth
    assert "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target" in auth
    body = json.loads(request.content)
    assert body["Key"] == {"pk": {"S": "user:1"}}
    assert body["ReturnValues"] == "UPDATED_NEW"
    values = body["ExpressionAttributeValues"].values()
    assert {"N": "42"} in values
    assert {"N": "1900000001"} in values  # expiry rounded up to whole seconds


async def test_credentials_are_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(httpx.Response(200, json={}))
    store = rec.store()
    await store.get("k")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDROTATED")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    await store.get("k")
    first, second = rec.requests
    assert "Credential=AKIDTESTTESTTEST/" in first.headers["authorization"]
    assert "Credential=AKIDROTATED/" in second.headers["authorization"]
    assert "x-amz-security-token" not in second.headers


async def test_missing_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    rec = Recorder(httpx.Response(200, json={}))
    with pytest.raises(StoreError, match="AWS_SECRET_ACCESS_KEY"):
        await rec.store().get("k")
    assert rec.requests == []


@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"]
)
async def test_throttling_is_retried_with_growing_jittered_backoff(code: str) -> None:
    ok = httpx.Response(200, json={"Attributes": {"n": {"N": "1"}}})
    rec = Recorder(_error(code), _error(code), _error(code), ok)
    assert await rec.store().add("k", {"n": 1}) == {"n": 1}  # even a non-idempotent write
    assert len(rec.requests) == 4
    assert len(rec.sleeps) == 3
    for attempt, slept in enumerate(rec.sleeps):
        assert 0 <= slept <= 0.025 * 2**attempt


async def test_throttling_gives_up_as_unavailable() -> None:
    rec = Recorder(_error("ThrottlingException"))
    with pytest.raises(StoreUnavailable, match="gave up after 3 attempts"):
        await rec.store(max_attempts=3).get("k")
    assert len(rec.requests) == 3


async def test_5xx_and_dropped_connections_are_retried_for_reads() -> None:
    ok = httpx.Response(200, json={"Item": {"pk": {"S": "k"}, "n": {"N": "7"}}})
    rec = Recorder(_error("InternalServerError", 500), httpx.ReadTimeout("slow"), ok)
    assert await rec.store().get("k") == {"n": 7}
    assert len(rec.requests) == 3


@pytest.mark.parametrize(
    "failure",
    [_error("InternalServerError", 500), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")],
)
async def test_ambiguous_failures_are_not_retried_for_adds(failure: httpx.Response | Exception) -> None:
    # The ADD may have been applied: retrying could count money twice.
    rec = Recorder(failure, httpx.Response(200, json={"Attributes": {"n": {"N": "1"}}}))
    with pytest.raises(StoreUnavailable, match="outcome unknown"):
        await rec.store().add("k", {"n": 1})
    assert len(rec.requests) == 1


async def test_ambiguous_failures_are_not_retried_for_conditional_puts() -> None:
    rec = Recorder(_error("InternalServerError", 500), httpx.Response(200, json={}))
    with pytest.raises(StoreUnavailable, match="outcome unknown"):
        await rec.store().put_if("lease", {"owner": "me"}, expected={"owner": None})
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    "failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("syn"), _error("ServiceUnavailable", 503)]
)
async def test_failures_before_the_request_ran_are_retried_for_adds(
    failure: httpx.Response | Exception,
) -> None:
    rec = Recorder(failure, httpx.Response(200, json={"Attributes": {"n": {"N": "1"}}}))
    assert await rec.store().add("k", {"n": 1}) == {"n": 1}
    assert len(rec.requests) == 2


async def test_missing_table_names_the_table() -> None:
    rec = Recorder(_error("ResourceNotFoundException", message="Requested resource not found"))
    with pytest.raises(StoreError, match=r"table 'budgets' not found in us-east-1") as info:
        await rec.store().get("k")
    assert not isinstance(info.value, StoreUnavailable)
    assert len(rec.requests) == 1


async def test_validation_errors_are_store_errors() -> None:
    rec = Recorder(_error("ValidationException", message="An operand has an incorrect data type"))
    with pytest.raises(StoreError, match="rejected UpdateItem on 'budgets': An operand"):
        await rec.store().add("k", {"n": 1})


async def test_error_messages_never_contain_secrets() -> None:
    echo = "signature mismatch for test-secret-key-do-not-leak / test-session-token"
    rec = Recorder(_error("InvalidSignatureException", message=echo))
    with pytest.raises(StoreError, match="refused the credentials") as info:
        await rec.store().get("k")
    text = str(info.value)
    assert "test-secret-key-do-not-leak" not in text
    assert "test-session-token" not in text
    assert "***" in text


async def test_condition_failure_without_old_item_means_a_limit_refused() -> None:
    rec = Recorder(_error("ConditionalCheckFailedException"))
    assert await rec.store().add("k", {"spent": 20}, limits={"spent": 10}) is None
    assert len(rec.requests) == 1


async def test_add_condition_carries_the_precomputed_threshold() -> None:
    rec = Recorder(httpx.Response(200, json={"Attributes": {"spent": {"N": "30"}}}))
    await rec.store().add("k", {"spent": 20}, limits={"spent": 50})
    body = rec.bodies()[0]
    condition = body["ConditionExpression"]
    names = {v: k for k, v in body["ExpressionAttributeNames"].items()}
    values = body["ExpressionAttributeValues"]
    threshold = next(p for p, v in values.items() if v == {"N": "30"})  # 50 - 20
    assert f"(attribute_not_exists({names['spent']}) OR {names['spent']} <= {threshold})" in condition
    assert body["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


async def test_unprocessed_keys_are_retried_until_done() -> None:
    def first(request: httpx.Request) -> httpx.Response:
        keys = json.loads(request.content)["RequestItems"]["budgets"]["Keys"]
        return httpx.Response(
            200,
            json={
                "Responses": {"budgets": [{"pk": {"S": "a"}, "n": {"N": "1"}}]},
                "UnprocessedKeys": {"budgets": {"Keys": keys[1:]}},
            },
        )

    second = httpx.Response(200, json={"Responses": {"budgets": [{"pk": {"S": "b"}, "n": {"N": "2"}}]}})
    rec = Recorder(first, second)
    assert await rec.store().get_many(["a", "b", "c"]) == {"a": {"n": 1}, "b": {"n": 2}}
    sent = [[k["pk"]["S"] for k in b["RequestItems"]["budgets"]["Keys"]] for b in rec.bodies()]
    assert sent == [["a", "b", "c"], ["b", "c"]]
    assert len(rec.sleeps) == 1


async def test_get_many_chunks_by_100_and_dedupes() -> None:
    rec = Recorder(httpx.Response(200, json={"Responses": {"budgets": []}}))
    keys = [f"k{i}" for i in range(250)]
    assert await rec.store().get_many(keys + keys[:10]) == {}
    sizes = sorted(len(b["RequestItems"]["budgets"]["Keys"]) for b in rec.bodies())
    assert sizes == [50, 100, 100]
    assert all(b["RequestItems"]["budgets"]["ConsistentRead"] is True for b in rec.bodies())


async def test_get_many_of_nothing_makes_no_request() -> None:
    rec = Recorder(httpx.Response(500))
    assert await rec.store().get_many([]) == {}
    assert rec.requests == []


async def test_shared_client_is_not_closed_but_own_client_is() -> None:
    shared = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    store = DynamoDBStore("t", region="eu-west-1", http_client=shared)
    await store.get("k")
    await store.aclose()
    assert not shared.is_closed
    await shared.aclose()


def test_region_and_endpoint_resolution() -> None:
    with pytest.raises(ValueError, match="region"):
        DynamoDBStore("t")  # no region, no endpoint: nothing is read from the environment
    assert DynamoDBStore("t", region="eu-central-1").url == "https://dynamodb.eu-central-1.amazonaws.com/"
    assert DynamoDBStore("t", region="cn-north-1").url == "https://dynamodb.cn-north-1.amazonaws.com.cn/"
    local = DynamoDBStore("t", endpoint="http://127.0.0.1:5000")
    assert (local.url, local.region) == ("http://127.0.0.1:5000/", "us-east-1")
