"""`dynamodb://table` — the production store: one DynamoDB table, reached over HTTP.

Table layout: partition key `pk` (S); every value field is a top-level attribute (ints as
N, strs as S); `expires_at` (N, whole epoch seconds) is the table's TTL attribute. Enable
TTL on `expires_at` so expired items are eventually deleted; until then (up to ~2 days)
GetItem/BatchGetItem still return them, so this store checks expiry itself: on every
read, and inside every condition (`:now` is the caller's clock).

Why no boto3: importing boto3 and building a client costs ~200 ms of Lambda cold start.
DynamoDB's JSON protocol is one `POST /` with an `X-Amz-Target` header; requests are
signed by `tier_router.store.sigv4` with credentials read from the environment on each
call (Lambda rotates them).

Retries: throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
`RequestLimitExceeded`) and failures where the request surely did not run (connect
errors, 503) are retried with exponential backoff and full jitter. Timeouts, dropped
connections and 500s are ambiguous — the write may have been applied — so they are
retried only for idempotent operations (reads, plain put/delete). Retrying an ADD could
double-count money and retrying a conditional put could report a lease we actually won
as lost; those raise StoreUnavailable ("outcome unknown") instead.

`add` on an expired item: the UpdateItem is conditioned on the item being live; if that
fails, the old item comes back with the error (`ReturnValuesOnConditionCheckFailure`).
If it is expired, the item is replaced by a fresh one (PutItem conditioned on it being
still expired), so an expired window's counters never leak into the next one; if a
limit refused, the result is None; if another writer got in between, we go round again.

Limits worth knowing:
- an item is at most 400 KB (ours are a few hundred bytes);
- one partition key sustains about 1,000 writes/s (1 KB WCU each). A counter hotter than
  that (say, a global spend counter under heavy load) must be sharded: keep N keys
  `pk#0 .. pk#N-1`, `add` to a random shard, and read all N with one `get_many` and sum.
  With `limits`, give each shard limit/N (or re-balance) — a per-shard ceiling is the
  price of spreading writes. Nothing here shards today; budgets and breakers write far
  below the limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from tier_router.store.base import (
    Record,
    Scalar,
    StoreError,
    StoreUnavailable,
    Value,
    apply_add,
    check_deltas,
    check_expected,
    check_key,
    check_value,
    normalize_expiry,
)
from tier_router.store.sigv4 import Credentials, credentials_from_env, sign

ENDPOINT_ENV = "TIER_ROUTER_DYNAMODB_ENDPOINT"
PK = "pk"
EXPIRES = "expires_at"
BATCH_GET_MAX = 100  # BatchGetItem's per-request key limit

THROTTLING = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
AUTH_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "UnrecognizedClientException",
    }
)
# The request never reached DynamoDB: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_ADD_ROUNDS = 8  # add() rounds lost to concurrent resets of an expired item before giving up


class _ConditionFailed(Exception):
    """ConditionalCheckFailedException, carrying the old item when DynamoDB sent it."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


class DynamoDBStore:
    """`Store` over one DynamoDB table, with our own JSON-protocol client."""

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        credentials: Callable[[], Credentials | None] = credentials_from_env,
        consistent_reads: bool = True,
        timeout_s: float = 2.0,
        max_attempts: int = 5,
        backoff_base_s: float = 0.025,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not table:
            raise ValueError("DynamoDB store needs a table name")
        endpoint = endpoint or os.environ.get(ENDPOINT_ENV) or None
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            if not endpoint:
                raise ValueError(
                    "DynamoDB store needs a region: set AWS_REGION or use dynamodb://table?region=..."
                )
            region = "us-east-1"  # a local endpoint (moto, DynamoDB Local) ignores it
        self.table = table
        self.region = region
        self.url = _post_url(endpoint or f"https://dynamodb.{region}.amazonaws.com")
        self._client = http_client
        self._owns_client = http_client is None
        self._credentials = credentials
        self._consistent = consistent_reads
        self._timeout = httpx.Timeout(timeout_s)
        self._max_attempts = max(1, max_attempts)
        self._backoff_base_s = backoff_base_s
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"DynamoDBStore(table={self.table!r}, region={self.region!r}, url={self.url!r})"

    # --- the Store interface ----------------------------------------------------------

    async def get_many(self, keys: Sequence[str]) -> dict[str, Value]:
        unique = list(dict.fromkeys(check_key(k) for k in keys))
        chunks = [unique[i : i + BATCH_GET_MAX] for i in range(0, len(unique), BATCH_GET_MAX)]
        out: dict[str, Value] = {}
        for part in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            out.update(part)
        return out

    async def get(self, key: str) -> Value | None:
        response = await self._call(
            "GetItem",
            {"TableName": self.table, "Key": _key(check_key(key)), "ConsistentRead": self._consistent},
            idempotent=True,
        )
        record = _record(response.get("Item"))
        return None if record is None or record.live(self._clock()) is None else record.value

    async def put(self, key: str, value: Mapping[str, Scalar], *, expires_at: float | None = None) -> None:
        item = _item(check_key(key), Record(check_value(value), normalize_expiry(expires_at)))
        await self._call("PutItem", {"TableName": self.table, "Item": item}, idempotent=True)

    async def add(
        self,
        key: str,
        deltas: Mapping[str, int],
        *,
        expires_at: float | None = None,
        limits: Mapping[str, int] | None = None,
    ) -> dict[str, int] | None:
        check_key(key)
        check_deltas(deltas, limits)
        expiry = normalize_expiry(expires_at)
        for _ in range(_ADD_ROUNDS):
            now = self._clock()
            try:
                return await self._update_add(key, deltas, limits, expiry, now)
            except _ConditionFailed as failed:
                old = _record(failed.item)
            # Replay the decision on the item as it was when the condition failed.
            verdict = apply_add(old, deltas, limits, expiry, now)
            if verdict is None:
                return None  # a limit refused
            if old is not None and old.live(now) is None:
                fresh, new = verdict
                if await self._replace_expired(key, fresh, now):
                    return new
            # Otherwise another writer changed the item in between: go round again.
        raise StoreUnavailable(f"DynamoDB add on {key!r}: lost {_ADD_ROUNDS} races in a row")

    async def put_if(
        self,
        key: str,
        value: Mapping[str, Scalar],
        *,
        expected: Mapping[str, Scalar | None],
        expires_at: float | None = None,
    ) -> bool:
        check_expected(expected)
        item = _item(check_key(key), Record(check_value(value), normalize_expiry(expires_at)))
        request: dict[str, Any] = {"TableName": self.table, "Item": item}
        if expected:
            expr = _Expr()
            now = expr.value(self._clock())
            exp = expr.name(EXPIRES)
            parts = []
            for field, want in expected.items():
                name = expr.name(field)
                if want is None:
                    parts.append(f"(attribute_not_exists({name}) OR {exp} <= {now})")
                else:
                    live = f"(attribute_not_exists({exp}) OR {exp} > {now})"
                    parts.append(f"({name} = {expr.value(want)} AND {live})")
            request.update(expr.request(" AND ".join(parts)))
        try:
            await self._call("PutItem", request, idempotent=False)
        except _ConditionFailed:
            return False
        return True

    async def delete(self, key: str) -> None:
        await self._call(
            "DeleteItem", {"TableName": self.table, "Key": _key(check_key(key))}, idempotent=True
        )

    async def ping(self) -> None:
        """One eventually-consistent GetItem: proves reachability, credentials and the table."""
        await self._call(
            "GetItem", {"TableName": self.table, "Key": _key("__tier_router_ping__")}, idempotent=True
        )

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- operations -------------------------------------------------------------------

    async def _batch_get(self, keys: list[str]) -> dict[str, Value]:
        out: dict[str, Value] = {}
        pending: list[dict[str, Any]] = [_key(k) for k in keys]
        for attempt in range(self._max_attempts):
            response = await self._call(
                "BatchGetItem",
                {"RequestItems": {self.table: {"Keys": pending, "ConsistentRead": self._consistent}}},
                idempotent=True,
            )
            now = self._clock()
            for raw in response.get("Responses", {}).get(self.table, []):
                record = _record(raw)
                if record is not None and record.live(now) is not None:
                    out[raw[PK]["S"]] = record.value
            pending = response.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
            if not pending:
                return out
            if attempt + 1 < self._max_attempts:
                await self._backoff(attempt)
        raise StoreUnavailable(
            f"DynamoDB BatchGetItem on {self.table!r}: {len(pending)} keys still unprocessed "
            f"after {self._max_attempts} attempts (throttled)"
        )

    async def _update_add(
        self,
        key: str,
        deltas: Mapping[str, int],
        limits: Mapping[str, int] | None,
        expiry: int | None,
        now: float,
    ) -> dict[str, int]:
        expr = _Expr()
        exp = expr.name(EXPIRES)
        update = "ADD " + ", ".join(f"{expr.name(f)} {expr.value(d)}" for f, d in deltas.items())
        if expiry is not None:
            update += f" SET {exp} = {expr.value(expiry)}"
        conditions = [f"(attribute_not_exists({exp}) OR {exp} > {expr.value(now)})"]
        for field, limit in (limits or {}).items():
            # Conditions allow no arithmetic: compare the OLD value with limit - delta.
            name, threshold = expr.name(field), expr.value(limit - deltas[field])
            if deltas[field] <= limit:
                conditions.append(f"(attribute_not_exists({name}) OR {name} <= {threshold})")
            else:  # even from 0 the new value would exceed: only a negative old value fits
                conditions.append(f"{name} <= {threshold}")
        response = await self._call(
            "UpdateItem",
            {
                "TableName": self.table,
                "Key": _key(key),
                "UpdateExpression": update,
                **expr.request(" AND ".join(conditions)),
                "ReturnValues": "UPDATED_NEW",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
            idempotent=False,
        )
        attributes = response.get("Attributes", {})
        return {f: _int(attributes.get(f, {}), f) for f in deltas}

    async def _replace_expired(self, key: str, record: Record, now: float) -> bool:
        expr = _Expr()
        condition = f"{expr.name(EXPIRES)} <= {expr.value(now)}"  # still the expired item
        request = {"TableName": self.table, "Item": _item(key, record), **expr.request(condition)}
        try:
            await self._call("PutItem", request, idempotent=False)
        except _ConditionFailed:
            return False
        return True

    # --- the wire ---------------------------------------------------------------------

    async def _call(self, op: str, payload: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """One DynamoDB operation with retries. Raises _ConditionFailed, StoreError(s)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        last = ""
        for attempt in range(self._max_attempts):
            if attempt:
                await self._backoff(attempt - 1)
            credentials = self._credentials()
            if credentials is None:
                raise StoreError(
                    "no AWS credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                )
            headers = {
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{op}",
            }
            headers.update(
                sign(
                    method="POST",
                    url=self.url,
                    headers=headers,
                    body=body,
                    credentials=credentials,
                    region=self.region,
                    service="dynamodb",
                )
            )
            try:
                response = await self._http().post(
                    self.url, content=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {credentials.redact(str(exc))}"
                if idempotent or isinstance(exc, _NOT_SENT):
                    continue
                raise StoreUnavailable(
                    f"DynamoDB {op} on {self.table!r}: {last}; outcome unknown, not retried"
                ) from None
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise StoreError(f"DynamoDB {op} on {self.table!r}: the response is not JSON") from None
            code, message = _error_of(response)
            message = credentials.redact(message)
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed(_json(response).get("Item"))
            last = f"HTTP {response.status_code} {code}: {message}".strip()
            if code in THROTTLING or response.status_code == 503:
                continue
            if response.status_code >= 500:
                if idempotent:
                    continue
                raise StoreUnavailable(
                    f"DynamoDB {op} on {self.table!r}: {last}; outcome unknown, not retried"
                )
            raise self._error(op, code, message, response.status_code)
        raise StoreUnavailable(
            f"DynamoDB {op} on {self.table!r}: gave up after {self._max_attempts} attempts ({last})"
        )

    def _error(self, op: str, code: str, message: str, status: int) -> StoreError:
        if code == "ResourceNotFoundException":
            return StoreError(
                f"DynamoDB table {self.table!r} not found in {self.region} at {self.url} "
                f"(create it with partition key 'pk' (S) and TTL on 'expires_at')"
            )
        if code in AUTH_ERRORS:
            return StoreError(
                f"DynamoDB refused the credentials for {op} on {self.table!r}: {code}: {message}"
            )
        if code == "ValidationException":
            return StoreError(f"DynamoDB rejected {op} on {self.table!r}: {message}")
        return StoreError(f"DynamoDB {op} on {self.table!r} failed: HTTP {status} {code}: {message}")

    async def _backoff(self, attempt: int) -> None:
        """Exponential backoff with full jitter (spreads retries of many clients)."""
        await self._sleep(random.uniform(0, min(1.0, self._backoff_base_s * 2**attempt)))  # noqa: S311

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:  # created lazily: a cold start that never touches state pays nothing
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client


# --- marshalling and expressions --------------------------------------------------------


class _Expr:
    """Placeholders for attribute names (#n0) and values (:v0), so no reserved-word clashes."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, str]] = {}
        self._by_name: dict[str, str] = {}

    def name(self, field: str) -> str:
        if field not in self._by_name:
            placeholder = f"#n{len(self._by_name)}"
            self._by_name[field] = placeholder
            self.names[placeholder] = field
        return self._by_name[field]

    def value(self, v: int | float | str) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = _attr(v)
        return placeholder

    def request(self, condition: str) -> dict[str, Any]:
        out: dict[str, Any] = {"ConditionExpression": condition, "ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _post_url(endpoint: str) -> str:
    return endpoint if endpoint.endswith("/") else endpoint + "/"


def _attr(v: int | float | str) -> dict[str, str]:
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, float) and not v.is_integer():
        return {"N": repr(v)}
    return {"N": str(int(v))}


def _key(key: str) -> dict[str, Any]:
    return {PK: {"S": key}}


def _item(key: str, record: Record) -> dict[str, Any]:
    item: dict[str, Any] = {PK: {"S": key}}
    item.update({f: _attr(v) for f, v in record.value.items()})
    if record.expires_at is not None:
        item[EXPIRES] = _attr(record.expires_at)
    return item


def _int(attr: dict[str, str], field: str) -> int:
    try:
        return int(attr["N"])
    except (KeyError, ValueError):
        raise StoreError(f"field {field!r} is not an integer in DynamoDB: {attr!r}") from None


def _record(item: dict[str, Any] | None) -> Record | None:
    """DynamoDB item -> Record (pk dropped, expiry split out)."""
    if item is None:
        return None
    value: Value = {}
    expires_at = None
    for field, attr in item.items():
        if field == PK:
            continue
        if field == EXPIRES:
            expires_at = float(attr["N"])
        elif "S" in attr:
            value[field] = attr["S"]
        else:
            value[field] = _int(attr, field)
    return Record(value, expires_at)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from a DynamoDB error body like {"__type": "...#Code", "message": "..."}."""
    data = _json(response)
    code = str(data.get("__type", "")).rpartition("#")[2]
    message = str(data.get("message") or data.get("Message") or "")
    if not code and not message:
        message = response.text[:200]
    return code, message
