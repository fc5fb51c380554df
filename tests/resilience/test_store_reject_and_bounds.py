"""Issue 13, item 3 and part of item 11: adversarial checks of three promises.

1. `on_store_error: reject` answers EVERY store failure with an OpenAI-shaped 503
   `store_unavailable` — not only `StoreUnavailable`: a missing DynamoDB table, absent
   credentials, a SQLite disk I/O error or a read-only SQLite file are plain `StoreError`s.
   With `allow`, the same failures are served (fail open).
2. `/readyz` checks that the store can be WRITTEN, not only read.
3. Non-finite numbers however written (`1e400`) are a 400, and every numeric setting of the
   rules file is bounded (a `1e308` fails at load naming the field).

The read-only SQLite store: the tests run as root, where chmod does not stop writes, so
`ReadOnlySQLite` opens a real SQLite file and then sets `PRAGMA query_only`: every write then
fails inside SQLite with the same `sqlite3.OperationalError` ("attempt to write a readonly
database") a read-only file gives. When not running as root, the chmod variant runs too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from tier_router.errors import StoreError, StoreUnavailable
from tier_router.routing.loader import RulesError, parse_rules
from tier_router.store.dynamodb import DynamoDBStore
from tier_router.store.memory import MemoryStore
from tier_router.store.sqlite import SQLiteStore

from tests.support.stores import WRITES, Counting

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"

STORE_FAILURES: dict[str, StoreError] = {
    "unreachable": StoreUnavailable("DynamoDB chat on 'tbl': gave up after 5 attempts"),
    "missing-table": StoreError("DynamoDB table 'tier-router' not found in us-east-1 at https://x/"),
    "no-credentials": StoreError("no AWS credentials in the environment (AWS_ACCESS_KEY_ID / ...)"),
    "sqlite-disk-io": StoreError("SQLite store /var/lib/tier-router/state.db: disk I/O error"),
    "sqlite-read-only": StoreError("SQLite store /srv/state.db: attempt to write a readonly database"),
}


class Failing(Counting):
    """A MemoryStore whose calls named in `ops` raise `error` (a copy per call)."""

    def __init__(self, error: StoreError, ops: frozenset[str] | None = None) -> None:
        super().__init__(MemoryStore())
        self.error = error
        self.ops = ops

    async def before(self, name: str) -> None:
        await super().before(name)
        if self.ops is None or name in self.ops:
            raise type(self.error)(str(self.error))


class ReadOnlySQLite(SQLiteStore):
    """A real SQLite file whose connection refuses writes as a read-only file does."""

    def _connection(self) -> sqlite3.Connection:
        conn = super()._connection()
        conn.execute("PRAGMA query_only = ON")
        return conn


def reject_rules(rules_dict: Any, **budgets: Any) -> dict[str, Any]:
    return rules_dict(
        budgets={"daily_usd": 5, "on_store_error": "reject", **budgets},
        limits={"requests_per_minute": 1000},
        cache={"enabled": True},
    )


def assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "store_unavailable"
    assert error["type"] == "api_error"
    assert set(error) == {"message", "type", "param", "code"}
    text = response.text
    assert "Traceback" not in text
    assert "/var/lib" not in text
    assert "/srv/" not in text
    assert ".db" not in text


# --- 1. reject mode: every kind of StoreError is a 503 ------------------------------------


@pytest.mark.parametrize("kind", sorted(STORE_FAILURES))
@pytest.mark.parametrize("ops", ["every-call", "writes-only"])
async def test_reject_mode_answers_503_for_every_store_error(
    kind: str, ops: str, make_router, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    failing = Failing(STORE_FAILURES[kind], None if ops == "every-call" else WRITES)
    router = make_router(rules=reject_rules(rules_dict), store=failing)
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    for body in (chat(), chat(temperature=0)):  # the second also consults the cache
        assert_store_unavailable(await router.post(CHAT, json=body))
    assert primary.call_count == 0  # nothing was spent


@pytest.mark.parametrize("kind", sorted(STORE_FAILURES))
async def test_allow_mode_serves_through_every_store_error(
    kind: str, make_router, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    router = make_router(
        rules=reject_rules(rules_dict, on_store_error="allow"), store=Failing(STORE_FAILURES[kind])
    )
    upstream.post(urls["primary"]).respond(200, json=completion())
    response = await router.post(CHAT, json=chat(temperature=0))
    assert response.status_code == 200, response.text


async def test_reject_mode_dynamodb_without_credentials(
    make_router, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    store = DynamoDBStore("tier-router", credentials=lambda: None, region="us-east-1")
    router = make_router(rules=reject_rules(rules_dict), store=store)
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    assert_store_unavailable(await router.post(CHAT, json=chat()))
    assert primary.call_count == 0
    ready = await router.get("/readyz")
    assert ready.status_code == 503
    assert any("credentials" in p for p in ready.json()["problems"])


async def test_reject_mode_dynamodb_missing_table(
    make_router, rules_dict, upstream: respx.MockRouter, urls, chat, completion
) -> None:
    def not_found(request: httpx.Request) -> httpx.Response:
        body = {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException", "message": "nope"}
        return httpx.Response(400, json=body)

    upstream.route(host="dynamodb.test").mock(side_effect=not_found)
    store = DynamoDBStore(
        "missing",
        credentials=lambda: _credentials(),
        endpoint="https://dynamodb.test",
        region="us-east-1",
    )
    router = make_router(rules=reject_rules(rules_dict), store=store)
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    assert_store_unavailable(await router.post(CHAT, json=chat()))
    assert primary.call_count == 0


def _credentials() -> Any:
    from tier_router.aws.sigv4 import Credentials

    return Credentials("AKIDEXAMPLE", "secret-example", None)


async def test_reject_mode_read_only_sqlite_file(
    make_router, rules_dict, upstream: respx.MockRouter, urls, chat, completion, tmp_path: Path
) -> None:
    path = tmp_path / "state.db"
    await _create(path)
    router = make_router(rules=reject_rules(rules_dict), store=ReadOnlySQLite(path))
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    response = await router.post(CHAT, json=chat())
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "store_unavailable"
    assert "Traceback" not in response.text
    assert str(tmp_path) not in response.text
    assert primary.call_count == 0


async def _create(path: Path) -> None:
    """A real, initialized SQLite store file (schema and WAL mode), then closed."""
    store = SQLiteStore(path)
    await store.put("seed", {"v": 1})
    await store.aclose()


# --- 2. /readyz checks that the store can be written -------------------------------------


async def test_readyz_503_when_writes_fail(make_router) -> None:
    router = make_router(store=Failing(STORE_FAILURES["sqlite-read-only"], WRITES))
    ready = await router.get("/readyz")
    assert ready.status_code == 503
    assert any(p.startswith("state store not writable") for p in ready.json()["problems"])


async def test_readyz_503_on_a_read_only_sqlite_store(make_router, tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await _create(path)
    healthy = make_router(store=SQLiteStore(path))
    assert (await healthy.get("/readyz")).status_code == 200
    ready = await make_router(store=ReadOnlySQLite(path)).get("/readyz")
    assert ready.status_code == 503
    (problem,) = ready.json()["problems"]
    assert problem.startswith("state store not writable")
    assert "readonly" in problem


# --- 3. numbers: non-finite in requests, bounds in the rules file ------------------------


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+400", "-9.9e999"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "max_tokens", "presence_penalty", "seed"])
async def test_non_finite_numbers_are_a_400(
    number: str, field: str, make_router, upstream: respx.MockRouter, urls, completion
) -> None:
    router = make_router()
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    raw = f'{{"model": "auto", "messages": [{{"role": "user", "content": "hi"}}], "{field}": {number}}}'
    response = await router.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"
    assert "finite" in error["message"]
    assert primary.call_count == 0


async def test_non_finite_number_nested_is_a_400(
    make_router, upstream: respx.MockRouter, urls, completion
) -> None:
    router = make_router()
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    tool = (
        '{"type": "function", "function": {"name": "f", "parameters": {"type": "number", "maximum": 1e400}}}'
    )
    raw = '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tools": [' + tool + "]}"
    response = await router.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert primary.call_count == 0


async def test_large_finite_numbers_still_pass(
    make_router, upstream: respx.MockRouter, urls, completion
) -> None:
    router = make_router()
    primary = upstream.post(urls["primary"]).respond(200, json=completion())
    # underflow to 0.0 is finite; 1e300 is a float (in a field forwarded unchecked: `seed` must be
    # an integer, see tier_router.params)
    numbers = '"temperature": 1e-400, "x_vendor_scale": 1e300'
    raw = '{"model": "auto", "messages": [{"role": "user", "content": "hi"}], ' + numbers + "}"
    response = await router.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert primary.call_count == 1


# (section path, value) → the field named in the RulesError.
OUT_OF_BOUNDS: list[tuple[tuple[str, ...], Any, str]] = [
    (("breakers", "window_s"), 1e308, "window_s"),
    (("breakers", "recovery_s"), 1e308, "recovery_s"),
    (("breakers", "cache_ttl_s"), 1e308, "cache_ttl_s"),
    (("breakers", "recovery_max_s"), 1e308, "recovery_max_s"),
    (("breakers", "recovery_backoff"), 1e308, "recovery_backoff"),
    (("breakers", "recovery_backoff"), 0.5, "recovery_backoff"),
    (("breakers", "failure_threshold"), 10**30, "failure_threshold"),
    (("providers", "prov-a", "timeouts", "total"), 1e308, "total"),
    (("providers", "prov-a", "timeouts", "connect"), float("inf"), "connect"),
    (("providers", "prov-a", "timeouts", "stall"), 1e308, "stall"),
    (("providers", "prov-a", "probe", "timeout_s"), 1e308, "timeout_s"),
    (("models", "primary", "price", "input"), 1e308, "input"),
    (("models", "primary", "price", "output"), float("inf"), "output"),
    (("models", "primary", "max_output"), 10**30, "max_output"),
    (("models", "primary", "context_window"), 10**30, "context_window"),
    (("budgets", "daily_usd"), 1e308, "daily_usd"),
    (("budgets", "default_max_output_tokens"), 10**30, "default_max_output_tokens"),
    (("budgets", "pacing", "slack"), float("nan"), "slack"),
    (("limits", "tokens_per_minute"), 10**30, "tokens_per_minute"),
    (("limits", "requests_per_minute"), 1e308, "requests_per_minute"),
]


@pytest.mark.parametrize(("where", "value", "field"), OUT_OF_BOUNDS, ids=lambda v: str(v))
def test_out_of_bounds_settings_fail_at_load(
    where: tuple[str, ...], value: Any, field: str, rules_dict
) -> None:
    raw = rules_dict(breakers={}, budgets={"daily_usd": 1, "pacing": {}}, limits={})
    node = raw
    for part in where[:-1]:
        node = node.setdefault(part, {})
    node[where[-1]] = value
    with pytest.raises(RulesError) as info:
        parse_rules(raw, "bounds.yaml")
    message = str(info.value)
    assert "bounds.yaml" in message
    assert field in message
    assert any(field in p.where for p in info.value.problems)


def test_breakers_window_s_1e308_from_yaml(tmp_path: Path, rules_dict) -> None:
    """The issue's file, through `load_rules` (YAML reads `1e308` as a float)."""
    import yaml
    from tier_router.routing.loader import load_rules

    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules_dict()) + "breakers:\n  window_s: 1.0e+308\n")
    with pytest.raises(RulesError) as info:
        load_rules(path)
    (problem,) = info.value.problems
    assert "window_s" in problem.where
    assert "less than or equal to 86400" in problem.reason
    assert str(path) in str(info.value)
