"""`dynamodb://table` — the production store: one DynamoDB table, reached over HTTP.

Table layout: partition key `pk` (S); every value field is a top-level attribute (ints as
N, strs as S); `expires_at` (N, whole epoch seconds) is the table's TTL attribute. Enable
TTL on `expires_at` so expired items are eventually deleted; until then (up to ~2 days)
GetItem/BatchGetItem still return them, so this store checks expiry itself: on every
read, and inside every condition (`:now` is the caller's clock).

The wire — signing, retries with backoff, error parsing, redaction — is
`tier_router.aws.client` (no boto3: ~200 ms of Lambda cold start). Reads and plain
put/delete are idempotent and retried on any transient failure; `add` and conditional puts
are not retried when the outcome is ambiguous (timeouts, dropped connections, 500s): a
retried ADD could double-count money and a retried conditional put could report a lease we
actually won as lost. Those raise StoreUnavailable ("outcome unknown") instead.

`add` on an expired item: the UpdateItem is conditioned on the item being live; if that
fails, the old item comes back with the error (`ReturnValuesOnConditionCheckFailure`).
If it is expired, the item is replaced by a fresh one (PutItem conditioned on it being
still expired), so an expired window's counters never leak into the next one; if a
limit refused, the result is None; if another writer got in between, we go round again.

Limits worth knowing:
- an item is at most 400 KB (ours are a few hundred bytes);
- one partition key sustains about 1,000 write units/s, and a write costs one unit per KB
  of the item (before or after the update, the larger). A counter hotter than that is
  sharded by its owner, not here: the day items of spend and budgets (`spend.shards`,
  `budgets.shards`) keep N keys `spend:<day>#0 .. #N-1`, write one, read all N with one
  `get_many` and sum; under `limits`, each shard enforces its share of the cap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from tier_router.aws.client import AWSClient, CredentialSource, Failure, Outcome, Service
from tier_router.settings import environment_credentials
from tier_router.store.base import Marks, Scalar, Store, StoreError, StoreUnavailable, Value
from tier_router.store.record import Record, apply_add

DYNAMODB = Service("dynamodb", "DynamoDB_20120810", "1.0", "DynamoDB")
PK = "pk"
EXPIRES = "expires_at"
BATCH_GET_MAX = 100  # BatchGetItem's per-request key limit
_ADD_ROUNDS = 8  # add() rounds lost to concurrent resets of an expired item before giving up


class _ConditionFailed(StoreError):
    """ConditionalCheckFailedException, carrying the old item when DynamoDB sent it. Never
    leaves this module: `add` and `put_if` turn it into their answer."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


class DynamoDBStore(Store):
    """`Store` over one DynamoDB table. Region and endpoint: see `AWSClient` (the factory
    passes them from the URL or `Settings`)."""

    def __init__(
        self,
        table: str,
        *,
        credentials: CredentialSource = environment_credentials,
        consistent_reads: bool = True,
        clock: Callable[[], float] = time.time,
        deadline_s: float | None = None,
        **client_options: Any,
    ) -> None:
        """`client_options` go to `AWSClient`: region, endpoint, http_client, timeout_s (one
        HTTP attempt), max_attempts (here 5), backoff_base_s (here 25 ms), sleep."""
        if not table:
            raise ValueError("DynamoDB store needs a table name")
        super().__init__(deadline_s=deadline_s)
        self.table = table
        options = {"max_attempts": 5, "backoff_base_s": 0.025, **client_options}
        self._aws = AWSClient(DYNAMODB, failure=self._error, credentials=credentials, **options)
        self.region = self._aws.region
        self.url = self._aws.url
        self._consistent = consistent_reads
        self._clock = clock

    def __repr__(self) -> str:
        return f"DynamoDBStore(table={self.table!r}, region={self.region!r}, url={self.url!r})"

    # --- primitives (see Store) ---------------------------------------------------------

    async def _get_many(self, keys: list[str]) -> dict[str, Value]:
        chunks = [keys[i : i + BATCH_GET_MAX] for i in range(0, len(keys), BATCH_GET_MAX)]
        out: dict[str, Value] = {}
        for part in await asyncio.gather(*(self._batch_get(chunk) for chunk in chunks)):
            out.update(part)
        return out

    async def _get(self, key: str) -> Value | None:
        request = {"TableName": self.table, "Key": _key(key), "ConsistentRead": self._consistent}
        response = await self._call("GetItem", request, idempotent=True)
        record = _record(response.get("Item"))
        return None if record is None or record.live(self._clock()) is None else record.value

    async def _put(self, key: str, value: Value, expires_at: int | None) -> None:
        item = _item(key, Record(value, expires_at))
        await self._call("PutItem", {"TableName": self.table, "Item": item}, idempotent=True)

    async def _add(
        self, key: str, deltas: dict[str, int], limits: dict[str, int], expires_at: int | None, marks: Marks
    ) -> dict[str, int] | None:
        for _ in range(_ADD_ROUNDS):
            now = self._clock()
            try:
                return await self._update_add(key, deltas, limits, expires_at, now, marks)
            except _ConditionFailed as failed:
                old = _record(failed.item)
            # Replay the decision on the item as it was when the condition failed.
            verdict = apply_add(old, deltas, limits, expires_at, now, marks)
            if verdict is None:
                return None  # a limit refused
            if old is not None and old.live(now) is None:
                fresh, new = verdict
                if await self._replace_expired(key, fresh, now):
                    return new
            # Otherwise another writer changed the item in between: go round again.
        raise StoreUnavailable(f"DynamoDB add on {key!r}: lost {_ADD_ROUNDS} races in a row")

    async def _put_if(
        self, key: str, value: Value, expires_at: int | None, expected: dict[str, Scalar | None]
    ) -> bool:
        request: dict[str, Any] = {"TableName": self.table, "Item": _item(key, Record(value, expires_at))}
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

    async def _delete(self, key: str) -> None:
        await self._call("DeleteItem", {"TableName": self.table, "Key": _key(key)}, idempotent=True)

    async def _ping(self) -> None:
        """One eventually-consistent GetItem: proves reachability, credentials and the table."""
        request = {"TableName": self.table, "Key": _key("__tier_router_ping__")}
        await self._call("GetItem", request, idempotent=True)

    async def _aclose(self) -> None:
        await self._aws.aclose()

    # --- operations -------------------------------------------------------------------

    async def _batch_get(self, keys: list[str]) -> dict[str, Value]:
        out: dict[str, Value] = {}
        pending: list[dict[str, Any]] = [_key(k) for k in keys]
        attempts = self._aws.max_attempts
        for attempt in range(attempts):
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
            if attempt + 1 < attempts:
                await self._aws.backoff(attempt)
        raise StoreUnavailable(
            f"DynamoDB BatchGetItem on {self.table!r}: {len(pending)} keys still unprocessed "
            f"after {attempts} attempts (throttled)"
        )

    async def _update_add(
        self,
        key: str,
        deltas: Mapping[str, int],
        limits: Mapping[str, int],
        expiry: int | None,
        now: float,
        marks: Marks,
    ) -> dict[str, int]:
        expr = _Expr()
        exp = expr.name(EXPIRES)
        update = "ADD " + ", ".join(f"{expr.name(f)} {expr.value(d)}" for f, d in deltas.items())
        sets = [] if expiry is None else [f"{exp} = {expr.value(expiry)}"]
        conditions = [f"(attribute_not_exists({exp}) OR {exp} > {expr.value(now)})"]
        if marks.claim is not None:
            sets.append(f"{expr.name(marks.claim[0])} = {expr.value(marks.claim[1])}")
        conditions += [f"attribute_not_exists({expr.name(f)})" for f in marks.required_absent()]
        if marks.release is not None:
            conditions.append(f"attribute_exists({expr.name(marks.release)})")
        if sets:
            update += " SET " + ", ".join(sets)
        removed = marks.removed()
        if removed:
            update += " REMOVE " + ", ".join(expr.name(f) for f in removed)
        for field, limit in limits.items():
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

    # --- the wire: tier_router.aws.client ---------------------------------------------

    async def _call(self, op: str, payload: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        return await self._aws.call(op, payload, idempotent=idempotent, subject=self.table)

    def _error(self, failure: Failure) -> StoreError:
        """A failed call as the store's exception (`_ConditionFailed` for a condition)."""
        where = f"{failure.op} on {self.table!r}"
        outcome = failure.outcome
        if outcome is Outcome.CONDITION_FAILED:
            return _ConditionFailed((failure.body or {}).get("Item"))
        if outcome is Outcome.GAVE_UP:
            attempts = f"gave up after {failure.attempts} attempts"
            return StoreUnavailable(f"DynamoDB {where}: {attempts} ({failure.detail()})")
        if outcome is Outcome.UNKNOWN:
            return StoreUnavailable(f"DynamoDB {where}: {failure.detail()}; outcome unknown, not retried")
        if outcome is Outcome.NO_CREDENTIALS:
            return StoreError(
                "no AWS credentials in the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
            )
        if outcome is Outcome.NOT_FOUND:
            return StoreError(
                f"DynamoDB table {self.table!r} not found in {self.region} at {self.url} "
                f"(create it with partition key 'pk' (S) and TTL on 'expires_at')"
            )
        if outcome is Outcome.AUTH:
            return StoreError(f"DynamoDB refused the credentials for {where}: {failure.detail()}")
        if outcome is Outcome.BAD_RESPONSE:
            return StoreError(f"DynamoDB {where}: the response is not a JSON object")
        if failure.code == "ValidationException":
            return StoreError(f"DynamoDB rejected {where}: {failure.message}")
        return StoreError(f"DynamoDB {where} failed: {failure.detail()}")


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
